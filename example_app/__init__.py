"""The FastAPI app of the classic lesson: `async def` runs on the loop, `def` in a thread."""
