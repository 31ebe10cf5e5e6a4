"""What real suites do around the app: blockbuster active, library code doing the work below
app code that only awaits it, and loopwatch's own frames, which are never the culprit."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import line_of

from pytest_loopwatch._records import RawStall, Request, SampledStack
from pytest_loopwatch._stacks import OWN_PACKAGE
from pytest_loopwatch._watch import Watch

APPS = Path(__file__).parent / "apps"

CLIENTS = """
import httpx
import pytest
from starlette.testclient import TestClient

import library_work

FORM = {"content-type": "application/x-www-form-urlencoded"}
LARGE_FORM = "&".join(f"f{i}=v" for i in range(library_work.FIELDS))


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def async_client():
    transport = httpx.ASGITransport(app=library_work.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def test_client():
    return TestClient(library_work.app)
"""

BLOCKBUSTER_AS_STARLETTE_USES_IT = """
import pytest
from blockbuster import BlockBuster


@pytest.fixture(autouse=True)
def blockbuster():
    busting = BlockBuster("starlette")
    busting.functions["os.stat"].can_block_in("/mimetypes.py", "init")
    busting.functions["io.BufferedReader.read"].can_block_in("/starlette/testclient.py", "receive")
    busting.activate()
    try:
        yield
    finally:
        busting.deactivate()
"""

BOTH_CLIENTS = """
import pytest
from conftest import FORM, LARGE_FORM

@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/computing", "/small-form"])
async def test_through_asgi_transport(async_client, path):
    response = await async_client.post(path, content="a=1", headers=FORM)
    assert response.status_code == 200

@pytest.mark.parametrize("path", ["/computing", "/small-form"])
def test_through_test_client(test_client, path):
    response = test_client.post(path, content="a=1", headers=FORM)
    assert response.status_code == 200
"""


@pytest.fixture
def library_work(pytester: pytest.Pytester) -> Path:
    shutil.copy(APPS / "library_work.py", pytester.path)
    pytester.makeconftest(CLIENTS)
    return pytester.path / "library_work.py"


def test_a_stall_is_reported_beside_blockbuster_and_loopwatch_blocks_nothing_itself(
    pytester: pytest.Pytester, library_work: Path
) -> None:
    pytester.makepyfile(test_clients=BOTH_CLIENTS, test_busting=BLOCKBUSTER_AS_STARLETTE_USES_IT)
    pytester.makepyfile(
        conftest=CLIENTS + BLOCKBUSTER_AS_STARLETTE_USES_IT,
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly", "-W", "error")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [f"  blocked * ms at library_work.py:{line_of(library_work, 'SPIN')} in spin"] * 2
    )
    result.stdout.no_fnmatch_line("*LoopwatchInternalWarning*")
    result.stdout.no_fnmatch_line("*BlockingError*")
    result.stdout.no_fnmatch_line("INTERNALERROR*")


def test_work_in_library_code_that_app_code_awaits_names_both_lines(
    pytester: pytest.Pytester, library_work: Path
) -> None:
    pytester.makepyfile(
        """
        from conftest import FORM, LARGE_FORM

        def test_large_form(test_client):
            assert test_client.post("/large-form", content=LARGE_FORM, headers=FORM).text

        def test_small_form(test_client):
            assert test_client.post("/small-form", content="a=1", headers=FORM).text
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_large_form _*",
            "  blocked * ms at *.py:* in * (library code)",
            f"  reached from library_work.py:{line_of(library_work, 'AWAITS-THE-PARSER')} "
            "in large_form",
        ]
    )
    result.stdout.no_fnmatch_line(
        f"  blocked * ms at library_work.py:{line_of(library_work, 'MIDDLEWARE-AWAITS')} *"
    )


def own_frame(function: str) -> tuple[str, int, str, str, bool]:
    return (OWN_PACKAGE + "_calls.py", 10, function, "pytest_loopwatch._calls", False)


def test_loopwatch_frames_are_never_the_blocking_line_nor_shown() -> None:
    # The loop thread, sampled inside loopwatch's audit hook or its collector callback,
    # below library code only: the library's line is the blocking one.
    library = ("/usr/lib/python3/json/decoder.py", 3, "decode", "json.decoder", False)
    samples: Counter[SampledStack] = Counter(
        {(library, own_frame("notice")): 3, (library, own_frame("_on_audit_event")): 5}
    )
    watch = Watch(0.1)
    watch.record(
        RawStall(
            duration=0.2,
            threshold=0.1,
            request=Request("http", "GET", "/", None),
            route=None,
            endpoint=None,
            samples=samples,
        )
    )
    (stall,) = watch.stalls
    assert stall.location is not None
    assert stall.location.file == library[0]
    assert all(not frame.file.startswith(OWN_PACKAGE) for frame in stall.stack)
