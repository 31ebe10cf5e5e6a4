"""Data libraries reading and writing files in their C code, which no audit event announces:
caught at each library's entry points, when given a path; a buffer in memory passes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import line_of

pytestmark = pytest.mark.slow  # sessions in subprocesses: numpy loads once a process

APP = """
import io
import tempfile
from pathlib import Path

from fastapi import FastAPI
{imports}

HERE = Path(tempfile.mkdtemp())
{prepare}

app = FastAPI()


def from_a_file():
    {call}  # FILE-CALL


def from_memory():
    {in_memory}


@app.get("/async/file")
async def async_file() -> None:
    from_a_file()


@app.get("/async/memory")
async def async_memory() -> None:
    from_memory()


@app.get("/def/file")
def def_file() -> None:
    from_a_file()
"""

TESTS = """
from starlette.testclient import TestClient
import data_app

client = TestClient(data_app.app)

def test_file_on_the_loop():
    client.get("/async/file")

def test_memory_on_the_loop():
    client.get("/async/memory")

def test_file_in_the_threadpool():
    client.get("/def/file")
"""

CASES = {
    "numpy load": (
        "numpy",
        "import numpy",
        "numpy.save(HERE / 'saved.npy', numpy.arange(3))\n"
        "BUFFER = io.BytesIO(); numpy.save(BUFFER, numpy.arange(3))",
        "numpy.load(HERE / 'saved.npy')",
        "BUFFER.seek(0); numpy.load(BUFFER)",
        "numpy.load(PosixPath('*saved.npy'))",
    ),
    "numpy savetxt": (
        "numpy",
        "import numpy",
        "",
        "numpy.savetxt(str(HERE / 'out.txt'), numpy.arange(3))",
        "numpy.savetxt(io.StringIO(), numpy.arange(3))",
        "numpy.savetxt('*out.txt')",
    ),
    "pandas read_csv": (
        "pandas",
        "import pandas",
        "(HERE / 'data.csv').write_text('a,b\\n1,2\\n')",
        "pandas.read_csv(HERE / 'data.csv')",
        "pandas.read_csv(io.StringIO('a,b\\n1,2\\n'))",
        "pandas.read_csv(PosixPath('*data.csv'))",
    ),
    "pandas to_csv": (
        "pandas",
        "import pandas",
        "FRAME = pandas.DataFrame({'a': [1, 2]})",
        "FRAME.to_csv(HERE / 'out.csv')",
        "FRAME.to_csv()",
        "pandas.DataFrame.to_csv(PosixPath('*out.csv'))",
    ),
    "PIL open": (
        "PIL",
        "from PIL import Image",
        "Image.new('RGB', (4, 4)).save(HERE / 'image.png')\n"
        "PNG = (HERE / 'image.png').read_bytes()",
        "Image.open(HERE / 'image.png').load()",
        "Image.open(io.BytesIO(PNG)).load()",
        "PIL.Image.open(PosixPath('*image.png'))",
    ),
    "h5py File": (
        "h5py",
        "import h5py",
        "with h5py.File(HERE / 'data.h5', 'w') as f: f['x'] = [1, 2, 3]\n"
        "BUFFER = io.BytesIO()\n"
        "with h5py.File(BUFFER, 'w') as f: f['x'] = [1, 2, 3]",
        "h5py.File(HERE / 'data.h5', 'r').close()",
        "h5py.File(BUFFER, 'r').close()",
        "h5py.File(PosixPath('*data.h5'))",
    ),
    "pyarrow parquet": (
        "pyarrow",
        "import pyarrow\nimport pyarrow.parquet",
        "TABLE = pyarrow.table({'a': [1, 2]})\n"
        "pyarrow.parquet.write_table(TABLE, HERE / 'data.parquet')\n"
        "BUFFER = pyarrow.BufferOutputStream(); pyarrow.parquet.write_table(TABLE, BUFFER)",
        "pyarrow.parquet.read_table(HERE / 'data.parquet')",
        "pyarrow.parquet.read_table(pyarrow.BufferReader(BUFFER.getvalue()))",
        "pyarrow.parquet.read_table(PosixPath('*data.parquet'))",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_data_file_on_the_loop_fails_and_a_buffer_or_the_threadpool_passes(
    pytester: pytest.Pytester, case: str
) -> None:
    library, imports, prepare, call, in_memory, shown = CASES[case]
    # Looked for, not imported: a pytester session drops the modules imported during its
    # test, and numpy's C modules cannot be imported into a process again.
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    app = pytester.makepyfile(
        data_app=APP.format(imports=imports, prepare=prepare, call=call, in_memory=in_memory)
    )
    pytester.makepyfile(test_data=TESTS)
    # In a process of its own, for the same reason.
    # The threshold out of the way: a first read slowed past it by the machine would be named
    # on a stall instead.
    result = pytester.runpytest_subprocess(
        "--loopwatch", "--loopwatch-threshold=10s", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_file_on_the_loop _*",
            "loopwatch: 1 blocking call was made on the event loop",
            "*",
            "  GET /async/file  route /async/file",
            "*",
            f"  called {shown}* at data_app.py:{line_of(app, 'FILE-CALL')} in from_a_file",
            "  fix: *anyio.to_thread.run_sync*",
        ]
    )


def test_every_catalogue_entry_of_an_installed_library_is_where_it_says() -> None:
    # The entries name modules private to their libraries (`pandas.core.frame`,
    # `h5py._hl.files`, `httpx._client`): a library that moves one loses its calls silently.
    found = subprocess.run(
        [sys.executable, "-c", FIND_THE_CATALOGUE],
        capture_output=True,
        text=True,
        check=True,
    )
    missing, looked_at = json.loads(found.stdout)
    assert missing == []
    assert looked_at > 40


FIND_THE_CATALOGUE = """
import importlib, importlib.util, json, sys
from pytest_loopwatch._blocking_apis import CATALOGUE, resolve

missing, looked_at = [], 0
for api in CATALOGUE:
    try:
        installed = importlib.util.find_spec(api.module) is not None
    except ImportError:  # its package is not installed
        installed = False
    if not installed:
        continue
    importlib.import_module(api.module)
    looked_at += 1
    if resolve(api, dict(sys.modules)) is None:
        missing.append(f"{api.module}:{api.attribute}")
print(json.dumps([missing, looked_at]))
"""
