"""The calibration plan as one Dask graph: a task per (MS, SPW, step).

Dependencies carry the order (prepare -> assemble -> flag -> model ->
prebp -> [kcal] -> bpcal -> gains -> apply) per SPW; SPWs and observations
are independent chains, so they run side by side. Solves combined over SPWs
join the chains of one MS. With the native engine one task per (MS, SPW)
solves every step of that SPW from one read of its rows, and a small task per
step hands on that step's outcome. Targets' applies depend on the calibrator's solves
of the same SPW and read its tables where they are built. Each MS's publish
waits for every other task of that MS (and a calibrator's for its targets'
applies), then renames all its products into place together. Task keys name the step, MS and SPW so
the dashboard shows what runs, plus a token of the graph: two plans of the
same MS (other outputs, other SPWs) on one cluster must never share a key, or
Dask would hand one plan the other's results.
"""

from __future__ import annotations

import contextvars
import uuid

import dask

from dsa110_contimg.calibration import solving, steps
from dsa110_contimg.calibration.plan import (
    ALL_SPW,
    CalibrationPlan,
    ObservationPlan,
    solve_steps,
)
from dsa110_contimg.qa import graph as qa_graph


def _task(function, key, *args):
    return dask.delayed(function, pure=False)(*args, dask_key_name=key)


_GRAPH_TOKEN = contextvars.ContextVar("calibration_graph_token", default="")


def _key(step, obs: ObservationPlan, spw=ALL_SPW):
    label = "allspw" if spw < 0 else f"spw{spw:02d}"
    return f"{step}-{obs.stem}-{label}-{_GRAPH_TOKEN.get()}"


def add_calibration_graph(plan: CalibrationPlan, calibrator, log_dir, keep_qa=True) -> dict:
    """Delayed outcomes: {"<stem>": {"outcomes": [...], "publish": ...}} per observation.

    ``keep_qa``: each SPW's QA pass runs after its apply and is kept in ``log_dir`` for
    the report after the run (a driver that reports while the workers go on, as the
    archive's, leaves it out and reads each MS itself).
    """
    reset = _GRAPH_TOKEN.set(uuid.uuid4().hex[:8])
    try:
        return _build_graph(plan, calibrator, log_dir, keep_qa)
    finally:
        _GRAPH_TOKEN.reset(reset)


def _build_graph(plan: CalibrationPlan, calibrator, log_dir, keep_qa) -> dict:
    config = plan.config
    by_ms, assembled_of = {}, {}
    solved_tables = {}  # calibrator MS -> {spw: {step: (staged table, outcome)}}
    readers = {}  # calibrator MS -> target tasks that read its staged tables
    for obs in sorted(plan.observations, key=lambda o: o.role != "calibrator"):
        prepared = {
            p.spw: _task(
                steps.prepare,
                _key("prepare", obs, p.spw),
                obs,
                p,
                config,
                log_dir,
                calibrator if obs.role == "calibrator" else None,
            )  # fmt: skip
            for p in obs.pieces
        }
        assembled = _task(
            steps.assemble, _key("assemble", obs), obs, list(prepared.values()), config
        )
        flagged = {
            p.spw: _task(
                steps.flag,
                _key("flag", obs, p.spw),
                obs,
                p,
                config,
                log_dir,
                prepared[p.spw],
                assembled,
            )
            for p in obs.pieces
        }
        outcomes = list(prepared.values()) + [assembled] + list(flagged.values())
        applied = []
        if obs.role == "calibrator":
            per_spw_tables, solve_outcomes = _add_solves(obs, config, calibrator, log_dir,
                                                         flagged, prepared)  # fmt: skip
            solved_tables[obs.ms] = per_spw_tables
            outcomes += solve_outcomes
        else:
            per_spw_tables = solved_tables.get(obs.solutions_from, {})
        for p in obs.pieces:
            if obs.given_tables:
                tables = {f"table{i}": t for i, t in enumerate(obs.given_tables)}
                upstream = [flagged[p.spw]]
            else:
                entry = per_spw_tables.get(p.spw, {})
                tables = {step: table for step, (table, _) in entry.items()}
                upstream = [flagged[p.spw]] + [o for _, o in entry.values()]
            if not config.apply.enabled and not obs.given_tables:
                continue
            applied.append(
                _task(
                    steps.apply,
                    _key("apply", obs, p.spw),
                    obs,
                    p,
                    config,
                    log_dir,
                    tables,
                    upstream,
                    calibrator if obs.role == "calibrator" else None,
                    qa_graph.spw_visibility_qa_path(log_dir, obs.stem, p.spw) if keep_qa else None,
                )
            )
        outcomes += applied
        kept = zip(obs.pieces, applied, strict=True) if applied and keep_qa else ()
        for p, done in kept:
            outcomes.append(_task(steps.visibility_qa, _key("qa", obs, p.spw), obs, p,
                                  calibrator, log_dir, done))  # fmt: skip
        if obs.solutions_from is not None:
            readers.setdefault(obs.solutions_from, []).extend(applied)
        by_ms[obs.stem] = {"outcomes": outcomes}
        assembled_of[obs.stem] = assembled
    for obs in plan.observations:
        finished = by_ms[obs.stem]["outcomes"] + readers.get(obs.ms, [])
        published = _task(
            steps.publish, _key("publish", obs), obs, config, assembled_of[obs.stem], finished
        )
        by_ms[obs.stem]["outcomes"].append(published)
    return by_ms


def _add_solves(obs: ObservationPlan, config, calibrator, log_dir, flagged, prepared):
    """Solve and merge tasks of one calibrator MS.

    Returns ({spw: {step: (table, task)}}, tasks). A solve combined over SPWs
    applies earlier per-SPW tables through their merged table.
    """
    modelled = {
        p.spw: _task(
            steps.model,
            _key("model", obs, p.spw),
            obs,
            p,
            config,
            calibrator,
            flagged[p.spw],
            prepared[p.spw],
        )
        for p in obs.pieces
    }
    solve_vis = {p.spw: p.sub_ms for p in obs.pieces}
    ready = dict(modelled)
    outcomes = list(modelled.values())
    if config.fast.enabled:
        for p in obs.pieces:
            ready[p.spw] = _task(
                steps.average, _key("average", obs, p.spw), obs, p, config, log_dir, modelled[p.spw]
            )
            solve_vis[p.spw] = p.averaged_ms
            outcomes.append(ready[p.spw])
    tables = {p.spw: {} for p in obs.pieces}
    combined = {step: obs.staged(table) for step, table in obs.combined_tables}
    merged = {}  # step -> (merged table, merge task)

    def merged_table(step):
        if step not in merged:
            solved = [o for entry in tables.values() for s, (_, o) in entry.items() if s == step]
            target = obs.staged(obs.merged(step))
            merged[step] = (
                target,
                _task(steps.merge, _key(f"merge-{step}", obs), obs, config, step, target, solved),
            )
        return merged[step]

    # the native engine: one task per SPW solves every step from one read, unless a step
    # is combined over SPWs (then a task per step, each solve reading its own rows)
    chained = config.engine == "native" and not combined
    if chained:
        for p in obs.pieces:
            staged = {step: obs.staged(p.table(step)) for step, _ in solve_steps(config)}
            chain = _task(solving.solve_chain, _key("solve", obs, p.spw), obs, config, log_dir,
                          solve_vis[p.spw], p.spw, staged, [ready[p.spw]])  # fmt: skip
            for step, table in staged.items():
                task = _task(solving.chain_outcome, _key(step, obs, p.spw), chain, step)
                outcomes.append(task)
                tables[p.spw][step] = (table, task)
    for step, _ in [] if chained else solve_steps(config):
        if step in combined:
            priors, upstream = {}, [ready[s] for s in ready]
            for prior in list(next(iter(tables.values()), {})):
                if prior in combined:
                    table, task = tables[obs.spws[0]][prior]
                else:
                    table, task = merged_table(prior)
                priors[prior] = table
                upstream.append(task)
            task = _task(
                solving.solve,
                _key(step, obs),
                step,
                obs,
                config,
                log_dir,
                str(steps.work_mms(obs)),
                ALL_SPW,
                combined[step],
                priors,
                upstream,
            )
            outcomes.append(task)
            for spw in tables:
                tables[spw][step] = (combined[step], task)
            continue
        for p in obs.pieces:
            entry = tables[p.spw]
            task = _task(
                solving.solve,
                _key(step, obs, p.spw),
                step,
                obs,
                config,
                log_dir,
                solve_vis[p.spw],
                p.spw,
                obs.staged(p.table(step)),
                {s: t for s, (t, _) in entry.items()},
                [ready[p.spw]] + [o for _, o in entry.values()],
            )
            outcomes.append(task)
            entry[step] = (obs.staged(p.table(step)), task)
    for step, _ in solve_steps(config):
        if step in combined:
            solved = [tables[obs.spws[0]][step][1]]
            outcomes.append(
                _task(
                    steps.merge,
                    _key(f"merge-{step}", obs),
                    obs,
                    config,
                    step,
                    obs.staged(obs.merged(step)),
                    solved,
                )
            )
        else:
            outcomes.append(merged_table(step)[1])
    return tables, outcomes
