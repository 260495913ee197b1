"""What an archive run does, decided before anything runs.

The archive plan is data first: discover the MS, give each a role (a catalog
calibrator transits it, or not), pair every target with the calibrator file
nearest in time within the validity window, and skip what the manifest says
is done with unchanged inputs. Each calibrator then becomes a calibration
plan with its targets (their applies depend on its solves); a calibrator done
earlier lends its recorded tables to an apply plan for its new targets.

Observations still to be converted from subband files take part as pending
entries, described from their files' headers (times, pointing, band, dishes:
the fields the converted MS will have). A plan that needs one of them is
deferred: the runner makes it once its observations are converted, in the
same run and on the same cluster, while other conversions still run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dsa110_contimg.archive import discover
from dsa110_contimg.archive.manifest import DONE, Manifest
from dsa110_contimg.calibration.pipeline import plan_apply, plan_calibration
from dsa110_contimg.errors import ContimgError

# A file is a calibrator's when a catalog calibrator reaches this primary-beam response.
CALIBRATOR_MIN_RESPONSE = 0.3


@dataclass(frozen=True)
class ArchiveSettings:
    """What every calibration plan of the run is made with."""

    out_dir: str
    config: object  # CalibrationConfig
    refant: str
    min_response: float
    catalog: tuple


@dataclass(frozen=True)
class DeferredPlan:
    """A calibration or apply plan waiting for observations still being converted."""

    calibrator_ms: str  # the calibrator file (converted or not)
    targets: tuple[str, ...]
    waits_for: frozenset  # MS paths not yet converted
    tables: tuple[str, ...] = ()  # set: an apply plan lending a done calibrator's tables
    calibrator: str | None = None  # catalog name (a calibration plan)

    @property
    def solves(self) -> bool:
        """A calibration plan (its calibrator is solved), not an apply of a done one's tables."""
        return not self.tables

    @property
    def observations(self) -> tuple[str, ...]:
        """The MS the plan processes: the calibrator when it is solved, and the targets."""
        return ((self.calibrator_ms,) if self.solves else ()) + self.targets

    def without(self, ms: str) -> DeferredPlan:
        """The plan once ``ms`` is converted."""
        return dataclasses.replace(self, waits_for=self.waits_for - {ms})

    def drop_target(self, ms: str) -> DeferredPlan:
        """The plan without a target whose conversion failed."""
        targets = tuple(t for t in self.targets if t != ms)
        return dataclasses.replace(self, targets=targets, waits_for=self.waits_for - {ms})


@dataclass(frozen=True)
class ArchivePlan:
    calibrations: tuple  # CalibrationPlan per calibrator file to solve (with its targets)
    applies: tuple  # CalibrationPlan per earlier-solved calibrator lending its tables
    skipped: tuple[str, ...]  # done and unchanged
    failed: tuple[tuple[str, str], ...]  # (path, reason) known before anything runs
    roles: dict = field(default_factory=dict)  # path -> (role, fingerprint, solutions_from)
    deferred: tuple[DeferredPlan, ...] = ()  # plans needing observations still to convert
    settings: ArchiveSettings | None = None

    @property
    def plans(self) -> tuple:
        return self.calibrations + self.applies

    @property
    def n_to_process(self) -> int:
        """MS that run: in a plan now, or in a deferred plan."""
        now = sum(len(p.observations) for p in self.plans)
        later = {ms for deferred in self.deferred for ms in deferred.observations}
        return now + len(later)


def _unchanged_and_done(manifest: Manifest, entry) -> bool:
    record = manifest.get(entry.path)
    return (
        bool(entry.fingerprint)
        and record is not None
        and record["state"] == DONE
        and record["fingerprint"] == entry.fingerprint
        and all(Path(p).exists() for p in record["outputs"])
    )


def plan_archive(inputs, out_dir, manifest: Manifest, config, refant: str, catalog,
                 validity_hours: float, min_response: float = CALIBRATOR_MIN_RESPONSE,
                 pending=()) -> ArchivePlan:  # fmt: skip
    """Discover, classify and pair the inputs; decide what runs (no processing yet).

    ``pending`` are entries of observations still to be converted (no fingerprint yet):
    they are paired like the others, and the plans needing them are deferred.
    """
    settings = ArchiveSettings(str(out_dir), config, refant, min_response, tuple(catalog))
    entries, failed = [], []
    for path in discover.expand_inputs(inputs) if inputs else ():
        try:
            entries.append(discover.describe(path, catalog, min_response))
        except ContimgError as error:
            failed.append((str(path), str(error)))
    entries += list(pending)
    waiting = {e.path for e in pending}
    stems = {}
    for entry in entries:
        stem = Path(entry.path).name.removesuffix(".ms")
        if stem in stems:
            raise ContimgError(
                f"{entry.path} and {stems[stem]} share the name {stem}: their products would "
                "collide in one output directory; reprocess them into different --out"
            )
        stems[stem] = entry.path
    calibrators = [e for e in entries if e.role == "calibrator"]
    validity_s = validity_hours * 3600.0
    targets_of: dict[str, list] = {c.path: [] for c in calibrators}
    roles = {}
    for entry in entries:
        if entry.role == "calibrator":
            roles[entry.path] = ("calibrator", entry.fingerprint, None)
            continue
        nearest = discover.nearest_calibrator(entry, calibrators, validity_s)
        if nearest is None:
            roles[entry.path] = ("target", entry.fingerprint, None)
            failed.append((entry.path, f"no calibrator file within {validity_hours:g} h"))
            continue
        roles[entry.path] = ("target", entry.fingerprint, nearest.path)
        targets_of[nearest.path].append(entry)

    done = {e.path for e in entries if _unchanged_and_done(manifest, e)}
    fingerprints = {e.path: e.fingerprint for e in entries}

    def solutions_current(target) -> bool:
        """The target's calibrator is the same file, with the input its tables came from."""
        calibrator = roles[target][2]
        used = manifest.get(target)["solutions_from"]
        record = manifest.get(calibrator) if calibrator else None
        return (
            calibrator is not None
            and used == calibrator
            and record is not None
            and record["fingerprint"] == fingerprints[calibrator]
        )

    skipped = tuple(
        e.path for e in entries
        if e.path in done and (e.role == "calibrator" or solutions_current(e.path))
    )  # fmt: skip
    calibrations, applies, deferred = [], [], []
    for cal in calibrators:
        targets = tuple(t.path for t in targets_of[cal.path] if t.path not in skipped)
        needs = frozenset(m for m in (cal.path, *targets) if m in waiting)
        if cal.path not in skipped:
            if needs:
                deferred.append(DeferredPlan(cal.path, targets, needs, calibrator=cal.calibrator))
            else:
                calibrations.append(make_calibration(settings, cal.path, cal.calibrator, targets))
        elif targets:
            tables = tuple(manifest.get(cal.path)["caltables"])
            if needs:
                deferred.append(DeferredPlan(cal.path, targets, needs, tables=tables))
            else:
                applies.append(plan_apply(list(targets), list(tables), config, out_dir))
    return ArchivePlan(tuple(calibrations), tuple(applies), skipped, tuple(failed), roles,
                       tuple(deferred), settings)  # fmt: skip


def make_calibration(settings: ArchiveSettings, ms: str, calibrator_name: str, targets):
    """The calibration plan of a calibrator file with its targets (reads each MS)."""
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields

    calibrator = next(c for c in settings.catalog if c.name == calibrator_name)
    choice = FieldChoice(auto=True, min_response=settings.min_response)
    fields = choose_fields(ms, calibrator, choice)
    return plan_calibration([ms], calibrator, {ms: fields}, settings.refant, settings.config,
                            settings.out_dir, targets=list(targets))  # fmt: skip


def make_deferred(settings: ArchiveSettings, deferred: DeferredPlan):
    """The plan of a deferred entry whose observations are all converted now."""
    if not deferred.solves:
        return plan_apply(list(deferred.targets), list(deferred.tables), settings.config,
                          settings.out_dir)  # fmt: skip
    return make_calibration(settings, deferred.calibrator_ms, deferred.calibrator,
                            deferred.targets)  # fmt: skip


def format_archive_plan(archive: ArchivePlan) -> str:
    n_cal = len(archive.calibrations) + sum(1 for d in archive.deferred if d.solves)
    lines = [
        f"{archive.n_to_process} MS to process ({n_cal} calibrator file(s) to solve), "
        f"{len(archive.skipped)} done and unchanged, {len(archive.failed)} refused"
    ]
    lines += [f"  refused {path}: {reason}" for path, reason in archive.failed]
    return "\n".join(lines)
