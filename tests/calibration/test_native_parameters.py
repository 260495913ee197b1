"""CASA's solve parameters as the native engine reads them, and what it refuses."""

import numpy as np
import pytest

from dsa110_contimg.calibration import solve_request
from dsa110_contimg.errors import ContimgError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("inf", np.inf), ("30s", 30.0), ("2min", 120.0), ("1h", 3600.0), ("45", 45.0)],
)
def test_solints(text, seconds):
    assert solve_request.parse_solint(text) == seconds


def test_int_is_each_integration():
    assert 0 < solve_request.parse_solint("int") < 1e-3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", (0.0, np.inf, True)), (">1klambda", (1e3, np.inf, True)),
     ("<500lambda", (0.0, 500.0, True)), ("1~10klambda", (1e3, 1e4, True)),
     ("> 2 Mlambda", (2e6, np.inf, True)), ("0~500m", (0.0, 500.0, False)),
     (">0.1km", (100.0, np.inf, False)), ("<300", (0.0, 300.0, False))],
)  # fmt: skip
def test_uvranges_in_wavelengths_and_metres(text, expected):
    assert solve_request.parse_uvrange(text) == expected


def test_an_unreadable_uvrange_is_refused():
    with pytest.raises(ContimgError, match="uvrange"):
        solve_request.parse_uvrange("1 parsec")


BANDPASS = dict(field="0,1", spw="3", solint="inf", combine="scan,field", refant="DSA103",
                minblperant=4, minsnr=5.0, solnorm=True, fillgaps=3, uvrange="",
                gaintable=["t_prebp"], interp=["linear"], spwmap=[[0, 0, 0, 0]])  # fmt: skip


def test_bandpass_request():
    request = solve_request.request_from_parameters("bandpass", BANDPASS)
    assert (request.kind, request.spw, request.fields) == ("B", 3, (0, 1))
    assert request.combine_field and request.combine_scan and request.solnorm
    assert request.fillgaps == 3 and request.calmode == "ap"
    assert request.priors == (("t_prebp", "linear", (0, 0, 0, 0)),)


@pytest.mark.parametrize(
    ("task", "change", "message"),
    [("gaincal", {"gaintype": "KCROSS"}, "gaintype G or K"),
     ("gaincal", {"gaintype": "K", "combine": "scan,spw", "spw": "0,1"}, "delays per SPW"),
     ("gaincal", {"calmode": "x"}, "calmode"),
     ("bandpass", {"combine": "scan,spw"}, "combine 'spw'"), ("gaincal", {"spw": "0,1"}, "one SPW"),
     ("gaincal", {"spw": "0~3", "combine": "spw"}, "by id")],
)  # fmt: skip
def test_what_the_native_engine_refuses(task, change, message):
    with pytest.raises(ContimgError, match=message):
        solve_request.request_from_parameters(task, {**BANDPASS, **change})
