"""The catalogue of known blocking APIs: where each is caught, and what to do about it.

Every entry names an attribute of a module by its import path. Only modules the process
has already imported are ever touched, so a library that is not installed, or not used,
costs nothing and is never imported by loopwatch.

An entry is caught at the client's own entry point (`requests.Session.request`,
`httpx.Client.send`), above the transport, so that a test that mocks the transport
(`responses`, `respx`, an `httpx.MockTransport`, botocore's Stubber, fakeredis) still
counts: the app's code made the call. Entries marked `stand_in_only` are not wrapped; they
are the names tests replace with a mock (`patch("app.client.httpx.Client")`), by which
such a mock is known for what it stands in for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FIXES = {
    "sleep": "use `await asyncio.sleep(...)` (or `anyio.sleep`)",
    "http": "use an async client (`httpx.AsyncClient`, made once and reused), "
    "or make the endpoint a `def`",
    "database": "use an async driver (an `AsyncSession`, asyncpg, aiosqlite), "
    "or make the endpoint a `def`",
    "cache": "use the async client (`redis.asyncio`), or make the endpoint a `def`",
    "cloud": "run it with `await anyio.to_thread.run_sync(...)` (or aioboto3), "
    "or make the endpoint a `def`",
    "mail": "run it with `await anyio.to_thread.run_sync(...)` (or aiosmtplib), "
    "or make the endpoint a `def`",
    "subprocess": "use `await anyio.run_process(...)` (or `asyncio.create_subprocess_exec`)",
    "file": "use `anyio.open_file`/`anyio.Path`, or `await anyio.to_thread.run_sync(...)`",
    "socket": "use anyio's or asyncio's streams, or make the endpoint a `def`",
    "password": "hash in a thread: `await anyio.to_thread.run_sync(...)` "
    "(FastAPI: `run_in_threadpool`), or make the endpoint a `def`",
    "tls": "build the client (and its SSL context) once, in the lifespan, and reuse it",
}
"""One line per kind of call: the fix a report shows."""


def _sync_dialect(connection_or_engine: Any) -> bool:
    # An AsyncSession runs SQLAlchemy's sync core on the loop in a greenlet, awaiting its
    # driver underneath: those calls are async all the way down.
    return not getattr(getattr(connection_or_engine, "dialect", None), "is_async", False)


@dataclass(frozen=True)
class BlockingApi:
    """One known blocking callable: `module`'s attribute `attribute` (dotted)."""

    module: str
    attribute: str
    family: str
    name: str = ""
    """How a report names it; the attribute's path under `module`'s public name if empty."""
    shown_arguments: int = 1
    """How many arguments a report shows (0 for secrets such as passwords)."""
    is_method: bool = True
    blocks: Callable[[Any], bool] | None = None
    """Given the first argument (`self` for a method): whether this call can block."""
    path_argument: int | None = None
    """Where the file to read or write is among the arguments (after `self`): the call
    blocks when a path is given there, not a file object already open or a buffer."""
    stand_in_only: bool = False


def _methods(
    module: str, cls: str, names: str, family: str, public: str, **options: Any
) -> list[BlockingApi]:
    return [
        BlockingApi(module, f"{cls}.{name}", family, f"{public}.{name}", **options)
        for name in names.split()
    ]


def _functions(
    module: str, names: str, family: str, public: str, **options: Any
) -> list[BlockingApi]:
    return [
        BlockingApi(module, name, family, f"{public}.{name}", is_method=False, **options)
        for name in names.split()
    ]


_HTTP_VERBS = "get post put patch delete head options request"
_MONGO_METHODS = (
    "find_one insert_one insert_many update_one update_many replace_one delete_one "
    "delete_many count_documents aggregate bulk_write find_one_and_update "
    "find_one_and_delete find_one_and_replace"
)

CATALOGUE: tuple[BlockingApi, ...] = (
    # HTTP clients. `request`/`send` are what every verb goes through.
    *_methods(
        "requests.sessions", "Session", "request", "http", "requests.Session", shown_arguments=2
    ),
    *_methods("requests.adapters", "HTTPAdapter", "send", "http", "requests.HTTPAdapter"),
    *_methods("httpx._client", "Client", "send", "http", "httpx.Client"),
    *_methods("httpx2._client", "Client", "send", "http", "httpx2.Client"),
    *_methods(
        "urllib3.connectionpool",
        "HTTPConnectionPool",
        "urlopen",
        "http",
        "urllib3.HTTPConnectionPool",
        shown_arguments=2,
    ),
    *_methods(
        "urllib3.poolmanager",
        "PoolManager",
        "urlopen",
        "http",
        "urllib3.PoolManager",
        shown_arguments=2,
    ),
    *_methods("urllib.request", "OpenerDirector", "open", "http", "urllib.request.OpenerDirector"),
    *_methods("smtplib", "SMTP", "connect sendmail send_message", "mail", "smtplib.SMTP"),
    # Databases and caches, sync drivers and clients.
    *_methods(
        "sqlalchemy.engine.base",
        "Connection",
        "execute exec_driver_sql commit",
        "database",
        "sqlalchemy.Connection",
        blocks=_sync_dialect,
    ),
    *_methods(
        "sqlalchemy.engine.base",
        "Engine",
        "connect",
        "database",
        "sqlalchemy.Engine",
        shown_arguments=0,
        blocks=_sync_dialect,
    ),
    *_methods("psycopg", "Connection", "execute commit", "database", "psycopg.Connection"),
    *_methods("psycopg", "Cursor", "execute executemany", "database", "psycopg.Cursor"),
    *_functions("psycopg2", "connect", "database", "psycopg2", shown_arguments=0),
    *_methods("pymysql.cursors", "Cursor", "execute executemany", "database", "pymysql.Cursor"),
    *_methods("MySQLdb.cursors", "BaseCursor", "execute executemany", "database", "MySQLdb.Cursor"),
    *_methods("redis.client", "Redis", "execute_command", "cache", "redis.Redis"),
    *_methods("redis.client", "Pipeline", "execute", "cache", "redis.Pipeline", shown_arguments=0),
    *_methods(
        "pymongo.synchronous.collection",
        "Collection",
        _MONGO_METHODS,
        "database",
        "pymongo.Collection",
    ),
    *_methods(
        "pymongo.synchronous.cursor",
        "Cursor",
        "next",
        "database",
        "pymongo.Cursor",
        shown_arguments=0,
    ),
    *_methods(
        "mongomock.collection",
        "Collection",
        _MONGO_METHODS,
        "database",
        "mongomock.Collection",
    ),
    *_methods("botocore.client", "BaseClient", "_make_api_call", "cloud", "botocore.BaseClient"),
    # Password hashing: slow on purpose, and computed off the GIL or in C on the loop.
    *_functions("bcrypt", "hashpw checkpw kdf", "password", "bcrypt", shown_arguments=0),
    *_functions("hashlib", "pbkdf2_hmac scrypt", "password", "hashlib", shown_arguments=0),
    *_methods(
        "argon2._password_hasher",
        "PasswordHasher",
        "hash verify",
        "password",
        "argon2.PasswordHasher",
        shown_arguments=0,
    ),
    *_functions(
        "argon2.low_level",
        "hash_secret hash_secret_raw verify_secret",
        "password",
        "argon2.low_level",
        shown_arguments=0,
    ),
    *_methods(
        "passlib.context",
        "CryptContext",
        "hash verify verify_and_update",
        "password",
        "passlib.CryptContext",
        shown_arguments=0,
    ),
    *_methods(
        "pwdlib._hash",
        "PasswordHash",
        "hash verify verify_and_update",
        "password",
        "pwdlib.PasswordHash",
        shown_arguments=0,
    ),
    # Loading certificates reads and parses a CA bundle: 40-200 ms, on every
    # `httpx.AsyncClient()` made per request.
    *_methods(
        "ssl",
        "SSLContext",
        "load_verify_locations load_default_certs set_default_verify_paths load_cert_chain",
        "tls",
        "ssl.SSLContext",
    ),
    # Data files read and written in C, below any audit event: each library's entry points,
    # wrapped only where the library is imported. Given a path, they do file I/O on the loop
    # (an HDF5 file opened per request: 2-4 ms in a test, far more on a production file).
    *_functions(
        "numpy",
        "load save savez savez_compressed loadtxt savetxt genfromtxt fromfile",
        "file",
        "numpy",
        path_argument=0,
    ),
    *_functions(
        "pandas",
        "read_csv read_table read_fwf read_parquet read_feather read_orc read_excel read_hdf "
        "read_pickle read_stata read_sas read_spss",
        "file",
        "pandas",
        path_argument=0,
    ),
    *_methods(
        "pandas.core.frame",
        "DataFrame",
        "to_csv to_json to_parquet to_feather to_orc to_excel to_hdf to_pickle to_stata",
        "file",
        "pandas.DataFrame",
        path_argument=0,
    ),
    *_functions("PIL.Image", "open", "file", "PIL.Image", path_argument=0),
    *_methods("PIL.Image", "Image", "save", "file", "PIL.Image.Image", path_argument=0),
    BlockingApi("h5py._hl.files", "File.__init__", "file", "h5py.File", path_argument=0),
    *_functions("pyarrow.parquet", "read_table", "file", "pyarrow.parquet", path_argument=0),
    *_functions("pyarrow.parquet", "write_table", "file", "pyarrow.parquet", path_argument=1),
    *_functions(
        "pyarrow.feather", "read_table read_feather", "file", "pyarrow.feather", path_argument=0
    ),
    *_functions("pyarrow.feather", "write_feather", "file", "pyarrow.feather", path_argument=1),
    # What tests replace with a mock: known by these names when they do.
    *_functions("requests.api", _HTTP_VERBS, "http", "requests", stand_in_only=True),
    *_methods(
        "requests.sessions", "Session", _HTTP_VERBS, "http", "requests.Session", stand_in_only=True
    ),
    BlockingApi(
        "requests.sessions",
        "Session",
        "http",
        "requests.Session",
        is_method=False,
        stand_in_only=True,
    ),
    *_functions("httpx._api", f"{_HTTP_VERBS} stream", "http", "httpx", stand_in_only=True),
    *_methods(
        "httpx._client",
        "Client",
        f"{_HTTP_VERBS} stream",
        "http",
        "httpx.Client",
        stand_in_only=True,
    ),
    BlockingApi(
        "httpx._client", "Client", "http", "httpx.Client", is_method=False, stand_in_only=True
    ),
    *_functions("urllib.request", "urlopen", "http", "urllib.request", stand_in_only=True),
    BlockingApi("smtplib", "SMTP", "mail", "smtplib.SMTP", is_method=False, stand_in_only=True),
    BlockingApi(
        "smtplib", "SMTP_SSL", "mail", "smtplib.SMTP_SSL", is_method=False, stand_in_only=True
    ),
    *_functions(
        "subprocess",
        "run Popen call check_call check_output getoutput getstatusoutput",
        "subprocess",
        "subprocess",
        stand_in_only=True,
    ),
    *_functions("time", "sleep", "sleep", "time", stand_in_only=True),
    *_functions("sqlite3", "connect", "database", "sqlite3", stand_in_only=True),
    *_functions("boto3", "client resource", "cloud", "boto3", stand_in_only=True),
    BlockingApi(
        "redis.client", "Redis", "cache", "redis.Redis", is_method=False, stand_in_only=True
    ),
    BlockingApi(
        "pymongo.synchronous.mongo_client",
        "MongoClient",
        "database",
        "pymongo.MongoClient",
        is_method=False,
        stand_in_only=True,
    ),
    *_functions(
        "sqlalchemy.engine.create", "create_engine", "database", "sqlalchemy", stand_in_only=True
    ),
)


def resolve(api: BlockingApi, modules: dict[str, Any]) -> tuple[Any, str, Any] | None:
    """(the object holding the attribute, the attribute's name, its value), if the module
    is imported and has it."""
    owner = modules.get(api.module)
    if owner is None:
        return None
    *path, name = api.attribute.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    value = getattr(owner, name, None)
    return None if value is None else (owner, name, value)
