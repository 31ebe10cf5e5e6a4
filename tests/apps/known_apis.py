"""An app that calls each family of known blocking API, fast or mocked, three ways: in an
`async def` endpoint (on the loop: caught), in a `def` endpoint and through
`anyio.to_thread` (off the loop: let pass). Copied into the pytester sessions."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import mimetypes
import os
import shutil
import smtplib
import sqlite3
import tempfile
import urllib.error
import urllib.request
import warnings
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import argon2
import bcrypt
import boto3
import fakeredis
import httpx
import jinja2
import requests
import sqlalchemy
import urllib3
from botocore.stub import Stubber
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

with warnings.catch_warnings():
    # passlib 1.7.4 imports the standard library's `crypt`, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from passlib.context import CryptContext

app = FastAPI()

CLOSED_PORT = "http://127.0.0.1:9/"
"""Nothing listens there: a connection is refused at once, which is fast, not harmless."""

MOCKED_HTTPX = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
# One connection for every thread, closed by the session's end (`close_connections`): left to
# the collector, an open SQLite connection is a ResourceWarning on Python 3.13.
ENGINE = sqlalchemy.create_engine(
    "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
)
REDIS = fakeredis.FakeRedis()
S3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
STUBBED_S3 = Stubber(S3)
STUBBED_S3.activate()
BCRYPT_SALT = bcrypt.gensalt(rounds=4)
ARGON2 = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSLIB = CryptContext(schemes=["pbkdf2_sha256"], pbkdf2_sha256__default_rounds=1000)
PWDLIB = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1),))
TEMPLATES = Path(tempfile.mkdtemp())
(TEMPLATES / "page.html").write_text("<p>{{ name }}</p>")
JINJA = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), cache_size=0)
DATA = TEMPLATES / "data.txt"
DATA.write_text("data")


def _requests() -> None:
    # The tests mock this API with `responses`: the session still runs.
    requests.get("http://api.test/users")  # REQUESTS


def _httpx() -> None:
    MOCKED_HTTPX.get("http://api.test/users")  # HTTPX


def _urllib3() -> None:
    with contextlib.suppress(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", CLOSED_PORT)  # URLLIB3


def _urllib_request() -> None:
    with contextlib.suppress(urllib.error.URLError):
        urllib.request.urlopen(CLOSED_PORT)  # URLLIB-REQUEST


def _smtplib() -> None:
    with contextlib.suppress(OSError):
        smtplib.SMTP("127.0.0.1", 9)  # SMTPLIB


def _sqlalchemy() -> None:
    with Session(ENGINE) as session:
        session.execute(sqlalchemy.text("select 1"))  # SQLALCHEMY


def _sqlite3() -> None:
    # `closing`: a connection's own `with` commits and leaves it open (Python 3.13 warns).
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:  # SQLITE3
        connection.execute("select 1")


def _redis() -> None:
    REDIS.set("key", "value")  # REDIS


def _boto3() -> None:
    STUBBED_S3.add_response("list_buckets", {"Buckets": []})
    S3.list_buckets()  # BOTO3


def _bcrypt() -> None:
    bcrypt.hashpw(b"secret", BCRYPT_SALT)  # BCRYPT


def _argon2() -> None:
    ARGON2.hash("secret")  # ARGON2


def _passlib() -> None:
    PASSLIB.hash("secret")  # PASSLIB


def _pwdlib() -> None:
    PWDLIB.hash("secret")  # PWDLIB


def _pbkdf2() -> None:
    hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", 1000)  # PBKDF2


def _file() -> None:
    DATA.read_text()  # FILE


def _listdir() -> None:
    os.listdir(TEMPLATES)  # LISTDIR


def _walk() -> None:
    for _ in os.walk(TEMPLATES):  # WALK
        pass


def _glob() -> None:
    glob.glob(f"{TEMPLATES}/*.txt")  # GLOB


def _exists() -> None:
    os.path.exists(DATA)  # EXISTS


def _pathlib() -> None:
    DATA.is_file()  # PATHLIB


def _copy() -> None:
    shutil.copyfile(DATA, TEMPLATES / "copy.txt")  # COPY


def _mimetypes() -> None:
    mimetypes.init()  # reads the system's MIME tables: the standard library's lazy set-up
    mimetypes.guess_type("report.csv")


def _template() -> None:
    JINJA.get_template("page.html").render(name="x")  # the loader reads the template


def _zoneinfo() -> None:
    zoneinfo.ZoneInfo.clear_cache()
    zoneinfo.ZoneInfo("Europe/Berlin")  # opens the time-zone data


def _faked_get() -> None:
    requests.get("http://api.test/users")  # FAKED-GET


def _faked_client() -> None:
    with httpx.Client() as client:  # FAKED-CLIENT
        client.get("http://api.test/users")


CALLS: dict[str, Callable[[], None]] = {
    "requests": _requests,
    "httpx": _httpx,
    "urllib3": _urllib3,
    "urllib-request": _urllib_request,
    "smtplib": _smtplib,
    "sqlalchemy": _sqlalchemy,
    "sqlite3": _sqlite3,
    "redis": _redis,
    "boto3": _boto3,
    "bcrypt": _bcrypt,
    "argon2": _argon2,
    "passlib": _passlib,
    "pwdlib": _pwdlib,
    "pbkdf2": _pbkdf2,
    "file": _file,
    "listdir": _listdir,
    "walk": _walk,
    "glob": _glob,
    "exists": _exists,
    "pathlib": _pathlib,
    "copy": _copy,
    "faked-get": _faked_get,
    "faked-client": _faked_client,
    "mimetypes": _mimetypes,
    "template": _template,
    "zoneinfo": _zoneinfo,
}


@app.get("/async/{name}")
async def on_the_loop(name: str) -> str:
    CALLS[name]()
    return "done"


@app.get("/def/{name}")
def in_the_threadpool(name: str) -> str:
    CALLS[name]()
    return "done"


@app.get("/to-thread/{name}")
async def through_to_thread(name: str) -> str:
    await anyio.to_thread.run_sync(CALLS[name])
    return "done"


@app.get("/async-client-per-request")
async def async_client_per_request() -> int:
    async with httpx.AsyncClient() as client:  # ASYNC-CLIENT: loads the CA bundle
        return len(client.headers)


SHARED_CLIENT = httpx.AsyncClient()  # made once, as it should be


@app.get("/async-client-shared")
async def async_client_shared() -> int:
    return len(SHARED_CLIENT.headers)


@app.get("/mocked-client")
async def mocked_client() -> int:
    with httpx.Client() as client:  # MOCKED-CLIENT: the test replaces httpx.Client
        return client.get("http://api.test/users").status_code


@app.get("/mocked-get")
async def mocked_get() -> int:
    return requests.get("http://api.test/users").status_code  # MOCKED-GET
