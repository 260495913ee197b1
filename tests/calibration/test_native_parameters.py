"""CASA's solve parameters as the native engine reads them, and what it refuses."""

import numpy as np
import pytest

from dsa110_contimg.calibration import native
from dsa110_contimg.errors import ContimgError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("inf", np.inf), ("30s", 30.0), ("2min", 120.0), ("1h", 3600.0), ("45", 45.0)],
)
def test_solints(text, seconds):
    assert native.parse_solint(text) == seconds


def test_int_is_each_integration():
    assert 0 < native.parse_solint("int") < 1e-3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", (0.0, np.inf)), (">1klambda", (1e3, np.inf)), ("<500lambda", (0.0, 500.0)),
     ("1~10klambda", (1e3, 1e4)), ("> 2 Mlambda", (2e6, np.inf))],
)  # fmt: skip
def test_uvranges_in_wavelengths(text, expected):
    assert native.parse_uvrange_lambda(text) == expected


def test_uvrange_in_metres_is_refused():
    with pytest.raises(ContimgError, match="wavelengths"):
        native.parse_uvrange_lambda("0~500m")


BANDPASS = dict(field="0,1", spw="3", solint="inf", combine="scan,field", refant="DSA103",
                minblperant=4, minsnr=5.0, solnorm=True, fillgaps=3, uvrange="",
                gaintable=["t_prebp"], interp=["linear"], spwmap=[[0, 0, 0, 0]])  # fmt: skip


def test_bandpass_request():
    request = native.request_from_parameters("bandpass", BANDPASS)
    assert (request.kind, request.spw, request.fields) == ("B", 3, (0, 1))
    assert request.combine_field and request.combine_scan and request.solnorm
    assert request.fillgaps == 3 and not request.phase_only
    assert request.priors == (("t_prebp", "linear", (0, 0, 0, 0)),)


@pytest.mark.parametrize(
    ("task", "change", "message"),
    [("gaincal", {"gaintype": "K"}, "delays need"), ("gaincal", {"calmode": "a"}, "calmode"),
     ("gaincal", {"combine": "scan,spw"}, "combine 'spw'"), ("gaincal", {"spw": "0,1"}, "one SPW")],
)  # fmt: skip
def test_what_the_native_engine_refuses(task, change, message):
    with pytest.raises(ContimgError, match=message):
        native.request_from_parameters(task, {**BANDPASS, **change})
