"""`cascade`: one CLI for every step of the loop. Training commands import torch lazily,
so `cascade serve` runs in the serving image, which has no torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="cascade-serve: train, export, publish and serve cascade policies.", no_args_is_help=True
)

StoreOption = Annotated[Path, typer.Option(help="Model store root", envvar="CASCADE_STORE")]


@app.command()
def demo(
    store: StoreOption = Path("store"),
    policy: Annotated[str, typer.Option(help="Policy name")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed of simulator and training")] = 0,
    example: Annotated[Path, typer.Option(help="Where to write an example rank request")] = Path(
        "store/example-rank.json"
    ),
) -> None:
    """Train the small demo policy on the simulator, export it, publish it as the active version."""
    from models.demo import build_demo
    from models.sim.requests import write_example_request

    manifest = build_demo(store, policy=policy, seed=seed)
    typer.echo(
        f"published {manifest.policy}/{manifest.version} to {store} "
        f"(parity max abs error {manifest.parity.max_abs_error:.2e})"
    )
    write_example_request(example, seed=seed)
    typer.echo(f"example request: {example}")


@app.command()
def serve(
    store: StoreOption = Path("store"),
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Serve the active version over HTTP. Without REDIS_URL an embedded Redis is started here."""
    import uvicorn

    from service.embedded_redis import EmbeddedRedis
    from service.settings import Settings

    os.environ["CASCADE_STORE"] = str(store)
    settings = Settings()
    embedded = None
    if settings.redis_url is None:
        # One embedded server for all workers, owned by this parent process.
        embedded = EmbeddedRedis(settings.embedded_redis_dir)
        os.environ["CASCADE_REDIS_URL"] = embedded.url
        typer.echo(f"embedded Redis at {embedded.url}")
    try:
        uvicorn.run(
            "service.main:build",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
            access_log=False,
        )
    finally:
        if embedded is not None:
            embedded.stop()


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the document")] = Path("openapi.yaml"),
) -> None:
    """Write the app's OpenAPI document (the published contract) as YAML."""
    import yaml

    from service.app import create_app
    from service.settings import Settings

    document = create_app(Settings()).openapi()
    out.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
