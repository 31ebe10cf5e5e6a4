"""Known blocking APIs fail the test however fast, or mocked, when app code calls them on
the loop; the same calls in a `def` endpoint or a thread pass; the standard library's and
common libraries' lazy set-up passes everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import INI, line_of

APPS = Path(__file__).parent / "apps"

CLIENTS = """
import httpx
import pytest
import responses
from starlette.testclient import TestClient

import known_apis


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def close_connections():
    yield
    known_apis.ENGINE.dispose()


@pytest.fixture(autouse=True)
def mocked_api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("http://api.test/users", json=[])
        yield


@pytest.fixture
async def async_client():
    transport = httpx.ASGITransport(app=known_apis.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def test_client():
    return TestClient(known_apis.app)
"""

EACH_WAY = """
import pytest

@pytest.mark.anyio
@pytest.mark.parametrize("way", ["async", "def", "to-thread"])
async def test_through_asgi_transport(async_client, way):
    assert (await async_client.get(f"/{way}/{name}")).status_code == 200

@pytest.mark.parametrize("way", ["async", "def", "to-thread"])
def test_through_test_client(test_client, way):
    assert test_client.get(f"/{way}/{name}").status_code == 200
"""


@pytest.fixture
def known_apis(pytester: pytest.Pytester) -> Path:
    """`known_apis.py` and a conftest with its clients and a mocked `requests` API."""
    shutil.copy(APPS / "known_apis.py", pytester.path)
    pytester.makeconftest(CLIENTS)
    return pytester.path / "known_apis.py"


SLOW = pytest.mark.slow

FAMILIES = [
    ("requests", "REQUESTS", "requests.Session.request('get', 'http://api.test/users')"),
    ("httpx", "HTTPX", "httpx.Client.send(<Request('GET', 'http://api.test/users')>)"),
    ("urllib3", "URLLIB3", "urllib3.PoolManager.urlopen('GET', 'http://127.0.0.1:9/')"),
    (
        "urllib-request",
        "URLLIB-REQUEST",
        "urllib.request.OpenerDirector.open('http://127.0.0.1:9/')",
    ),
    ("smtplib", "SMTPLIB", "smtplib.SMTP.connect('127.0.0.1')"),
    ("sqlalchemy", "SQLALCHEMY", "sqlalchemy.Engine.connect()"),
    ("sqlite3", "SQLITE3", "sqlite3.connect(':memory:')"),
    ("redis", "REDIS", "redis.Redis.execute_command('SET')"),
    ("boto3", "BOTO3", "botocore.BaseClient._make_api_call('ListBuckets')"),
    ("bcrypt", "BCRYPT", "bcrypt.hashpw()"),
    ("argon2", "ARGON2", "argon2.PasswordHasher.hash()"),
    ("passlib", "PASSLIB", "passlib.CryptContext.hash()"),
    ("pwdlib", "PWDLIB", "pwdlib.PasswordHash.hash()"),
    ("pbkdf2", "PBKDF2", "hashlib.pbkdf2_hmac()"),
    ("file", "FILE", "open('*data.txt', 'r')"),
    ("listdir", "LISTDIR", "os.listdir('/*')"),
    ("walk", "WALK", "os.scandir('/*')"),
    ("glob", "GLOB", "glob.glob('*.txt')"),
    ("exists", "EXISTS", "os.stat(PosixPath('*data.txt'))"),
    ("pathlib", "PATHLIB", "os.stat(PosixPath('*data.txt')*)"),
    ("copy", "COPY", "shutil.copyfile(PosixPath('*data.txt'), PosixPath('*copy.txt'))"),
]


QUICK_FAMILIES = ("requests", "file")
"""The families a plain `pytest` checks; tox checks every one."""


@pytest.mark.parametrize(
    ("name", "tag", "described"),
    [
        pytest.param(*family, id=family[0], marks=() if family[0] in QUICK_FAMILIES else SLOW)
        for family in FAMILIES
    ],
)
def test_a_fast_or_mocked_call_on_the_loop_fails_and_off_the_loop_passes(
    pytester: pytest.Pytester, known_apis: Path, name: str, tag: str, described: str
) -> None:
    pytester.makepyfile(EACH_WAY.replace("{name}", name))
    # The threshold out of the way: under load a slow call is named on a stall instead.
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=10s", "-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=2)
    called = described.replace("[", "[[]")
    for test in ("test_through_asgi_transport?async?", "test_through_test_client?async?"):
        result.stdout.fnmatch_lines(
            [
                f"*_ {test} _*",
                "loopwatch: 1 blocking call was made on the event loop",
                "",
                f"  GET /async/{name}  route /async/{{name}}",
                "  endpoint known_apis.on_the_loop (known_apis.py:*)",
                f"  called {called} at known_apis.py:{line_of(known_apis, tag)} in _*",
                "  fix: *",
            ]
        )
    result.stdout.no_fnmatch_line("FAILED *-def]*")
    result.stdout.no_fnmatch_line("FAILED *-to-thread]*")


def test_the_fix_names_the_async_way_for_each_kind_of_call(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("name", ["requests", "sqlalchemy", "bcrypt", "file"])
        def test_call(test_client, name):
            test_client.get(f"/async/{name}")
        """
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=10s", "-p", "no:randomly")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "  fix: use an async client (`httpx.AsyncClient`, made once and reused), *",
            "  fix: use an async driver (an `AsyncSession`, asyncpg, aiosqlite), *",
            "  fix: hash in a thread: `await anyio.to_thread.run_sync(...)` *",
            "  fix: use `anyio.open_file`/`anyio.Path`, *",
        ]
    )


def test_lazy_set_up_of_the_standard_library_and_templates_passes_beside_a_file_read(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("name", ["mimetypes", "template", "zoneinfo", "file"])
        def test_lazy(test_client, name):
            test_client.get(f"/async/{name}")
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_lazy[[]file[]]*"])


def test_an_async_client_made_per_request_loads_certificates_on_the_loop(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    pytester.makepyfile(
        """
        def test_per_request(test_client):
            test_client.get("/async-client-per-request")

        def test_shared(test_client):
            test_client.get("/async-client-shared")
        """
    )
    # The threshold out of the way: under load, loading the bundle took 108 ms in CI, and the
    # call was then named on a stall instead; the call is caught however fast.
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=10s", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_per_request _*",
            "loopwatch: 1 blocking call was made on the event loop",
            "*",
            f"  called * at known_apis.py:"
            f"{line_of(known_apis, 'ASYNC-CLIENT: loads the CA bundle')} in *",
        ]
    )
    # Each line is named once, by its first call: httpx 0.27 (tox's lowest) looks for the
    # bundle file (`os.stat`) before loading it.
    reported = result.stdout.str()
    assert "called ssl.SSLContext.load_verify_locations(" in reported or (
        "called os.stat(" in reported
    )


def test_a_blocking_client_replaced_by_a_mock_still_counts(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    pytester.makepyfile(
        """
        from unittest import mock

        def test_mocked_client_class(test_client):
            with mock.patch("known_apis.httpx.Client") as client_class:
                client_class.return_value.__enter__.return_value.get.return_value.status_code = 200
                assert test_client.get("/mocked-client").json() == 200

        @mock.patch("requests.get")
        def test_mocked_function(get, test_client):
            get.return_value.status_code = 201
            assert test_client.get("/mocked-get").json() == 201

        def test_mocked_off_the_loop(test_client):
            with mock.patch("known_apis.httpx.Client"):
                assert test_client.get("/def/httpx").status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_mocked_client_class _*",
            "  called httpx.Client(...), replaced by a mock at known_apis.py:"
            f"{line_of(known_apis, 'MOCKED-CLIENT: the test replaces httpx.Client')} in *",
            "*_ test_mocked_function _*",
            "  called requests.get(...), replaced by a mock at known_apis.py:"
            f"{line_of(known_apis, 'MOCKED-GET')} in mocked_get",
        ]
    )


def test_a_blocking_call_replaced_by_a_fake_with_monkeypatch_still_counts(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    pytester.makepyfile(
        """
        import requests

        class Response:
            status_code = 201

        def fake_get(url, **kwargs):
            return Response()

        def fake_request(self, method, url, **kwargs):
            return Response()

        def test_faked_function(test_client, monkeypatch):
            monkeypatch.setattr(requests, "get", fake_get)
            assert test_client.get("/mocked-get").json() == 201

        def test_faked_by_its_path(test_client, monkeypatch):
            monkeypatch.setattr("known_apis.requests.get", fake_get)
            assert test_client.get("/mocked-get").json() == 201

        def test_faked_method(test_client, monkeypatch):
            monkeypatch.setattr(requests.Session, "request", fake_request)
            assert test_client.get("/mocked-get").json() == 201

        def test_faked_off_the_loop(test_client, monkeypatch):
            monkeypatch.setattr(requests, "get", fake_get)
            assert test_client.get("/def/requests").status_code == 200

        def test_fake_gone_with_the_patch():
            assert requests.get.__module__ == "requests.api"
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=3)
    mocked_get = line_of(known_apis, "MOCKED-GET")
    result.stdout.fnmatch_lines(
        [
            "*_ test_faked_function _*",
            f"  called requests.get(...), replaced by fake_get at known_apis.py:{mocked_get} in *",
            "*_ test_faked_by_its_path _*",
            f"  called requests.get(...), replaced by fake_get at known_apis.py:{mocked_get} in *",
            "*_ test_faked_method _*",
            "  called requests.Session.request(...), replaced by fake_request at *",
        ]
    )


def test_a_fake_put_in_place_by_plain_assignment_or_mocker_still_counts(
    pytester: pytest.Pytester, known_apis: Path
) -> None:
    # Each way a test puts a fake in place of a known API, each with the same fake in a
    # `def` endpoint beside it: the fake on the loop fails, off the loop passes.
    pytester.makepyfile(
        """
        import httpx  # the app's client, in tox's httpx2 env too
        import pytest
        import requests
        from unittest import mock

        class Response:
            status_code = 200

        def fake_get(url, **kwargs):
            return Response()

        class FakeClient:
            def __init__(self, **options):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                pass

            def get(self, url):
                return Response()

        @pytest.fixture
        def assigned(request):
            # Plain assignment, as a test without monkeypatch does, put back after.
            saved = requests.get, httpx.Client
            requests.get, httpx.Client = fake_get, FakeClient
            yield
            requests.get, httpx.Client = saved

        @pytest.fixture
        def mocked(mocker):
            mocker.patch("requests.get", return_value=Response())
            mocker.patch.object(httpx, "Client", FakeClient)

        @pytest.fixture
        def monkeypatched(monkeypatch):
            monkeypatch.setattr(httpx, "Client", FakeClient)
            monkeypatch.setattr(requests, "get", mock.Mock(return_value=Response()))

        @pytest.mark.parametrize("way", ["async", "def"])
        @pytest.mark.parametrize("faked", ["assigned", "mocked", "monkeypatched"])
        @pytest.mark.parametrize("call", ["faked-get", "faked-client"])
        def test_faked(test_client, request, faked, way, call):
            request.getfixturevalue(faked)
            assert test_client.get(f"/{way}/{call}").status_code == 200

        def test_the_real_ones_are_back():
            assert requests.get is requests.api.get
            assert httpx.Client is httpx._client.Client
        """
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=10s", "-p", "no:randomly")
    result.assert_outcomes(passed=7, failed=6)
    for faked in ("assigned", "mocked", "monkeypatched"):
        result.stdout.fnmatch_lines(
            [
                f"*_ test_faked[[]faked-get-{faked}-async[]] _*",
                f"  called requests.get(...), replaced by * at known_apis.py:"
                f"{line_of(known_apis, 'FAKED-GET')} in _faked_get",
            ]
        )
        result.stdout.fnmatch_lines(
            [
                f"*_ test_faked[[]faked-client-{faked}-async[]] _*",
                f"  called httpx.Client(...), replaced by FakeClient at known_apis.py:"
                f"{line_of(known_apis, 'FAKED-CLIENT')} in _faked_client",
            ]
        )
    result.stdout.no_fnmatch_line("*FAILED*-def]*")
    # Put back when the session ends: the modules, and what loopwatch wrapped in them.
    import httpx
    import requests

    assert type(requests) is type(httpx) is type(pytest)
    assert requests.get is requests.api.get
    assert not hasattr(requests.Session.request, "__loopwatch__")


def test_a_middleware_made_on_the_first_request_is_app_creation_and_its_dispatch_is_not(
    pytester: pytest.Pytester,
) -> None:
    # Starlette builds the middleware stack inside the app's first call: a middleware that
    # reads its configuration in its constructor failed 8 tests of a real project.
    pytester.makefile(".txt", config="setting")
    pytester.makepyfile(
        middleware_app="""
        from pathlib import Path
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import PlainTextResponse
        from starlette.routing import Mount, Route

        CONFIG = Path(__file__).with_name("config.txt")

        class ReadsOnce:
            def __init__(self, app):
                self.app = app
                self.setting = CONFIG.read_text()

            async def __call__(self, scope, receive, send):
                await self.app(scope, receive, send)

        class ReadsPerRequest:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                CONFIG.read_text()  # PER-REQUEST
                await self.app(scope, receive, send)

        async def hello(request):
            return PlainTextResponse("hello")

        def made_with(middleware):
            return Starlette(routes=[Route("/", hello)], middleware=[Middleware(middleware)])

        def mounting(middleware):
            return Starlette(routes=[Mount("/inner", made_with(middleware))])
        """,
        test_middleware="""
        import httpx
        import pytest
        from starlette.testclient import TestClient
        from middleware_app import ReadsOnce, ReadsPerRequest, made_with, mounting

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.parametrize("middleware", [ReadsOnce, ReadsPerRequest])
        def test_through_test_client(middleware):
            assert TestClient(made_with(middleware)).get("/").text == "hello"

        @pytest.mark.anyio
        @pytest.mark.parametrize("middleware", [ReadsOnce, ReadsPerRequest])
        async def test_through_asgi_transport(middleware):
            transport = httpx.ASGITransport(app=made_with(middleware))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/")).text == "hello"

        @pytest.mark.parametrize("middleware", [ReadsOnce, ReadsPerRequest])
        def test_mounted(middleware):
            assert TestClient(mounting(middleware)).get("/inner/").text == "hello"
        """,
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=3)
    per_request = line_of(pytester.path / "middleware_app.py", "PER-REQUEST")
    for test in ("test_through_test_client", "test_through_asgi_transport", "test_mounted"):
        result.stdout.fnmatch_lines(
            [
                f"*_ {test}?ReadsPerRequest? _*",
                f"  called open('*config.txt', 'r') at middleware_app.py:{per_request} in *",
            ]
        )
    result.stdout.no_fnmatch_line("FAILED *ReadsOnce*")


def test_a_stall_in_frameworks_first_use_passes_and_allowed_frames_can_be_added(
    pytester: pytest.Pytester,
) -> None:
    shutil.copy(APPS / "big_schema.py", pytester.path)
    pytester.makepyfile(
        """
        from starlette.testclient import TestClient
        import big_schema

        def test_schema():
            assert TestClient(big_schema.app).get("/openapi.json").status_code == 200

        def test_computing():
            assert TestClient(big_schema.app).get("/computing").status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=20ms", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_computing*"])
    pytester.makeini(INI + "loopwatch_allow = big_schema:computing\n")
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=20ms", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["loopwatch: no stalls (threshold 20 ms, 2 app calls watched)"])
