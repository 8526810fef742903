"""The baseline of the cached-request benchmark: a bare FastAPI endpoint returning constant JSON."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/constant")
def constant() -> dict[str, str]:
    return {"output_url": "http://127.0.0.1/files/constant?filename=x.mp3&expires=0&signature=0"}
