"""The calibration recipe's parameters: one small typed section per step.

Precedence, lowest first: the defaults below < a named preset < a YAML file
(``--config``) < command-line flags. The resolved config is logged at the
start of a run and stored in its summary.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dsa110_contimg.errors import ContimgError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlagConfig:
    enabled: bool = True
    autocorr: bool = True
    zeros: bool = True
    tfcrop: bool = False
    rflag: bool = False

    def modes(self) -> tuple[str, ...]:
        if not self.enabled:
            return ()
        wanted = {
            "autocorr": self.autocorr,
            "zeros": self.zeros,
            "tfcrop": self.tfcrop,
            "rflag": self.rflag,
        }
        return tuple(name for name, on in wanted.items() if on)


@dataclass(frozen=True)
class PhasingConfig:
    """Rephase the calibrator fields to the calibrator and write the model.

    ``model_position``: ``source`` predicts the calibrator where it is, for
    each field's own phase centre (right with or without rephasing);
    ``phase-centre`` puts it at each field's phase centre, which is only right
    after rephasing (the original pipeline's assumption).
    """

    rephase: bool = True
    write_model: bool = True
    model_position: str = "source"
    primary_beam: bool = True


@dataclass(frozen=True)
class PrebpConfig:
    enabled: bool = True
    solint: str = "30s"
    uvrange: str = ">1klambda"
    minsnr: float = 3.0
    minblperant: int = 4


@dataclass(frozen=True)
class DelayConfig:
    enabled: bool = False
    solint: str = "inf"
    minsnr: float = 3.0


@dataclass(frozen=True)
class BandpassConfig:
    enabled: bool = True
    solint: str = "inf"
    combine_field: bool = True
    solnorm: bool = True
    minsnr: float = 5.0
    fillgaps: int = 3
    minblperant: int = 4
    uvrange: str = ""


@dataclass(frozen=True)
class GainConfig:
    enabled: bool = True
    # Amplitude and phase: the bandpass is normalised (solnorm), so these set the flux scale.
    calmode: str = "ap"
    solints: tuple[str, ...] = ("inf", "60s")
    minsnr: float = 3.0
    minblperant: int = 4
    uvrange: str = ""


@dataclass(frozen=True)
class ApplyConfig:
    enabled: bool = True
    calwt: bool = False
    # Which gain solution interval CORRECTED_DATA uses (one of GainConfig.solints).
    gain_solint: str = "60s"


@dataclass(frozen=True)
class FastConfig:
    """Average the calibrator data before solving (``--fast``).

    After rephasing a point calibrator sits at the phase centre, so averaging
    within a solution interval loses no coherence. Channel averaging coarsens
    the bandpass; solutions are interpolated back in frequency on apply.
    """

    enabled: bool = False
    timebin: str = ""
    chanbin: int = 1


@dataclass(frozen=True)
class CalibrationConfig:
    flagging: FlagConfig = field(default_factory=FlagConfig)
    phasing: PhasingConfig = field(default_factory=PhasingConfig)
    prebp: PrebpConfig = field(default_factory=PrebpConfig)
    delay: DelayConfig = field(default_factory=DelayConfig)
    bandpass: BandpassConfig = field(default_factory=BandpassConfig)
    gains: GainConfig = field(default_factory=GainConfig)
    apply: ApplyConfig = field(default_factory=ApplyConfig)
    fast: FastConfig = field(default_factory=FastConfig)
    combine_spw: bool = False
    retries: int = 1
    # Who solves and applies: "native" (this project's kernels, CASA tables out,
    # equal to CASA's in the tests) or "casa" (gaincal, bandpass, applycal).
    engine: str = "native"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (
                self.phasing.model_position in ("source", "phase-centre"),
                "phasing.model_position must be 'source' or 'phase-centre'",
            ),
            (self.gains.calmode in ("p", "a", "ap"), "gains.calmode must be p, a or ap"),
            (bool(self.gains.solints), "gains.solints needs at least one interval"),
            (
                not self.apply.enabled
                or not self.gains.enabled
                or self.apply.gain_solint in self.gains.solints,
                f"apply.gain_solint {self.apply.gain_solint!r} is not one of gains.solints "
                f"{list(self.gains.solints)}",
            ),
            (self.fast.chanbin >= 1, "fast.chanbin must be at least 1"),
            (self.retries >= 0, "retries must not be negative"),
            (self.retries <= 10, "retries must be at most 10"),
            (self.bandpass.fillgaps >= 0, "bandpass.fillgaps must not be negative"),
            (not self.fast.timebin or _is_interval(self.fast.timebin),
             f"fast.timebin {self.fast.timebin!r} is not a time like 30s"),
        ]  # fmt: skip
        for section in ("prebp", "delay", "bandpass", "gains"):
            c = getattr(self, section)
            checks.append((0 <= c.minsnr < 1e6, f"{section}.minsnr must be >= 0, not {c.minsnr}"))
            if hasattr(c, "minblperant"):
                checks.append((c.minblperant >= 1, f"{section}.minblperant must be at least 1"))
            if hasattr(c, "solint"):
                checks.append((_is_interval(c.solint), f"{section}.solint {c.solint!r} is not "
                               "inf, int or a time like 30s"))  # fmt: skip
            if getattr(c, "uvrange", ""):
                checks.append((_is_uvrange(c.uvrange), f"{section}.uvrange {c.uvrange!r} is not "
                               "a range like >1klambda or 0~500m"))  # fmt: skip
        for solint in self.gains.solints:
            checks.append(
                (_is_interval(solint), f"gains.solints: {solint!r} is not inf, int or a time")
            )
        checks += [
            (
                not self.apply.enabled or self.bandpass.enabled or self.gains.enabled,
                "nothing to apply: bandpass and gains are both switched off",
            ),
            (self.engine in ENGINES, f"engine must be one of {list(ENGINES)}, not {self.engine!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ContimgError(f"invalid calibration config: {message}")


ENGINES = ("casa", "native")


_INTERVAL = re.compile(r"^(inf|int|\d+(\.\d*)?\s*(s|min|h)?)$")
_UVRANGE = re.compile(
    r"^\s*(<|>)?\s*\d+(\.\d*)?\s*(~\s*\d+(\.\d*)?)?\s*(m|km|lambda|klambda|Mlambda)?\s*$"
)


def _is_interval(text: str) -> bool:
    """A CASA solution interval: inf, int, or a number with s, min or h."""
    return bool(_INTERVAL.match(text.strip()))


def _is_uvrange(text: str) -> bool:
    """A CASA uvrange: [<|>]number[~number][unit]."""
    return bool(_UVRANGE.match(text))


PRESETS: dict[str, dict] = {
    "default": {},
    # Average 4 channels before solving; bandpass interpolated back on apply.
    "fast": {"fast": {"enabled": True, "chanbin": 4}},
    # A delay solve and RFI flagging.
    "thorough": {
        "delay": {"enabled": True},
        "flagging": {"tfcrop": True},
    },
}


def _merge_section(section, overrides: dict, where: str):
    known = {f.name for f in dataclasses.fields(section)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ContimgError(f"unknown {where} setting(s) {unknown}; known: {sorted(known)}")
    changes = {}
    for name, value in overrides.items():
        current = getattr(section, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ContimgError(f"{where}.{name} must be a mapping")
            changes[name] = _merge_section(current, value, f"{where}.{name}")
        elif isinstance(current, tuple):
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                _check_type(f"{where}.{name}", item, "")
            changes[name] = tuple(items)
        else:
            changes[name] = _check_type(f"{where}.{name}", value, current)
    return dataclasses.replace(section, **changes)


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _check_type(where: str, value, default):
    """``value`` if it has the type of ``default`` (ints pass as floats); else one clear error."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ContimgError(f"{where} must be {_TYPE_WORDS[kind]}, not {value!r}")
    return value


def read_yaml_mapping(path, what: str) -> dict:
    """The mapping a YAML settings file holds; one clear ContimgError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ContimgError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ContimgError(f"config file {path} is not valid YAML: {reason}") from None
    if not isinstance(loaded, dict):
        raise ContimgError(f"config file {path} must hold a mapping of {what}")
    return loaded


def resolve_config(
    preset: str = "default", yaml_path: str | None = None, overrides: dict | None = None
) -> CalibrationConfig:
    """Defaults < preset < YAML file < ``overrides`` (nested dicts by section)."""
    if preset not in PRESETS:
        raise ContimgError(f"unknown calibration preset {preset!r}; choose from {list(PRESETS)}")
    config = _merge_section(CalibrationConfig(), PRESETS[preset], "config")
    if yaml_path:
        config = _merge_section(config, read_yaml_mapping(yaml_path, "sections"), "config")
    if overrides:
        config = _merge_section(config, overrides, "config")
    if config.combine_spw and config.bandpass.solnorm:
        # solnorm zeroes each SPW's mean bandpass phase; gains combined over SPWs
        # cannot put those per-SPW offsets back, so CORRECTED_DATA would keep them.
        log.warning(
            "combine_spw: bandpass solnorm switched off (it would remove the per-SPW phase "
            "offsets that gains combined over SPWs cannot restore)"
        )
        config = dataclasses.replace(
            config, bandpass=dataclasses.replace(config.bandpass, solnorm=False)
        )
    config.validate()
    return config
