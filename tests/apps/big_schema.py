"""A FastAPI app with enough routes that building its OpenAPI schema takes about 100 ms,
and one endpoint of its own that computes as long; copied into the pytester sessions."""

from __future__ import annotations

import time

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    tags: list[str]
    price: float


def _add_route(number: int) -> None:
    async def update(item: Item) -> Item:
        return item

    app.post(f"/items-{number}", name=f"update_{number}")(update)


for number in range(800):
    _add_route(number)


@app.get("/computing")
async def computing() -> str:
    deadline = time.thread_time() + 0.1
    while time.thread_time() < deadline:  # COMPUTING
        pass
    return "done"
