"""`cascade`: one CLI for every step of the loop. Training commands import torch lazily,
so `cascade serve` runs in the serving image, which has no torch."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

if TYPE_CHECKING:  # training modules import torch: only when a training command runs
    from models.experiments.world_v2 import V2Config

app = typer.Typer(
    help="cascade-serve: train, export, evaluate, publish, activate and serve cascade policies.", no_args_is_help=True
)

StoreOption = Annotated[Path, typer.Option(help="Model store root", envvar="CASCADE_STORE")]
# The simulators a `--world` names (models/sim/world.py `simulator_in`; spelled here so `serve` imports no numpy).
WorldName = Literal["v1", "v2", "v2.1", "v2.2"]


@app.command()
def demo(
    store: StoreOption = Path("store"),
    policy: Annotated[str, typer.Option(help="Policy name")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed of simulator and training")] = 0,
    example: Annotated[Path, typer.Option(help="Where to write an example rank request")] = Path(
        "store/example-rank.json"
    ),
    world: Annotated[
        str,
        typer.Option(help="'v1' (request-level world, γ = 0), 'v2' or 'v2.1' (SIMULATOR.md sessions, γ = 0.95)"),
    ] = "v1",
) -> None:
    """Train the small demo policy on the simulator, export it, publish it as the active version."""
    from models.sim.requests import write_example_request
    from pipelines.demo import build_demo

    chosen = _world(world)
    sim = None
    config = None
    if chosen != "v1":
        from models.algorithms.demo_policy import demo_world, session_demo_config

        config = session_demo_config(seed, chosen)
        sim = demo_world(config)
    manifest = build_demo(store, policy=policy, seed=seed, config=config)
    typer.echo(
        f"published {manifest.policy}/{manifest.version} to {store} "
        f"(parity max abs error {manifest.parity.max_abs_error:.2e})"
    )
    write_example_request(example, seed=seed, sim=sim)
    by_id = example.with_name(f"{example.stem}-by-id{example.suffix}")
    write_example_request(by_id, seed=seed, by_id=True, sim=sim)
    typer.echo(f"example requests: {example} (inline features), {by_id} (candidates by id)")


@app.command()
def train(
    out: Annotated[Path, typer.Argument(help="Folder for the trained policy (policy.pt + training.json)")],
    seed: Annotated[int, typer.Option(help="Random seed of simulator and training")] = 0,
) -> None:
    """Train the demo policy on the simulator (supervised heads, RND, A3C) and keep it in a folder."""
    from dataclasses import replace

    from models.algorithms.demo_policy import DemoConfig
    from pipelines.demo import train_to_folder

    trained = train_to_folder(out, replace(DemoConfig(), seed=seed))
    typer.echo(f"trained in {trained.report['seconds']} s; wrote {out}")


@app.command()
def export(
    trained: Annotated[Path, typer.Argument(help="Folder written by `cascade train`")],
    out: Annotated[Path, typer.Argument(help="Bundle folder to write (graphs + manifest.json)")],
    policy: Annotated[str, typer.Option(help="Policy name")] = "demo",
    version: Annotated[str | None, typer.Option(help="Version name (default: the UTC time)")] = None,
) -> None:
    """Export a trained policy to an ONNX bundle, checked for parity with torch."""
    from pipelines.demo import export_trained

    manifest = export_trained(trained, out, policy, version)
    typer.echo(f"wrote {out}: {manifest.policy}/{manifest.version}, parity {manifest.parity.max_abs_error:.2e}")


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (its policy.pt and manifest)")],
    requests: Annotated[int, typer.Option(help="Fresh simulated requests")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the requests")] = 1,
    k: Annotated[int, typer.Option(help="Items served per request")] = 10,
) -> None:
    """The simulator's expected request reward of a bundle's policy, beside uniform and random actions."""
    import json

    from pipelines.demo import evaluate_bundle

    typer.echo(json.dumps(evaluate_bundle(bundle, requests, seed, k), indent=1))


@app.command()
def activate(
    policy: Annotated[str, typer.Argument(help="Policy name")],
    version: Annotated[str, typer.Argument(help="A version already in the service's store")],
    url: Annotated[str, typer.Option(help="Base URL of a running service")] = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(help="Admin bearer token", envvar="CASCADE_ADMIN_TOKEN")] = "",
) -> None:
    """Serve a version everywhere, through the running service's admin API (it verifies the bundle first)."""
    from pipelines.server import activate as activate_version

    if not token:
        raise typer.BadParameter("an admin token is needed (--token or CASCADE_ADMIN_TOKEN)")
    activate_version(url, policy, version, token)
    typer.echo(f"{policy} now serves {version}")


def _world(value: str, known: tuple[str, ...] = ("v1", "v2", "v2.1")) -> WorldName:
    """The simulator a `--world` option names (one of `known`), or a usage error."""
    if value in known:
        return cast(WorldName, value)
    raise typer.BadParameter("one of " + ", ".join(repr(k) for k in known), param_hint="--world")


def _niceness(level: int | None = None) -> str:
    """`nice -n N ` for a command line a report prints, as it was run: `level`, or this process's if it is
    running the experiment itself (empty at 0, and for a re-render that cannot know)."""
    level = os.nice(0) if level is None else level
    return f"nice -n {level} " if level else ""


def _section_key(base: str, world: str) -> str:
    """The RESULTS.md section of a run in `world`: v2's keeps its historical key, v2.1's is `<base>_v21`
    (v2.2's `<base>_v22`)."""
    return base if world == "v2" else f"{base}_{world.replace('.', '')}"


SeedsOption = Annotated[
    str, typer.Option(help="Explicit seed list: comma-separated seeds and inclusive ranges, e.g. 0-9,101,202")
]


def _stage_scored(config: V2Config, stage_score: str) -> V2Config:
    """`config` with its stages scored on `stage_score` ('predictions' or 'logits'), or as its world does."""
    from dataclasses import replace

    if stage_score in ("", config.stage_score):
        return config
    if stage_score not in ("predictions", "logits"):
        raise typer.BadParameter("'predictions' or 'logits'", param_hint="--stage-score")
    return replace(config, stage_score=cast(Literal["predictions", "logits"], stage_score))


def _complete_v2_runs(
    runs: Path,
    methods: tuple[str, ...],
    eval_users: int,
    steps: int,
    seeds: tuple[int, ...] = (),
    world: str = "v2",
    stage_score: str = "",
) -> dict[str, Any]:
    """The v2 run folder's record over the seeds (of `seeds`, or all) whose chosen methods all finished.
    The folder's all.json, when there is one, says what ran (updates, evaluation users, niceness): its
    values, not the flags', go into the record and so into the command a report prints."""
    import json
    from dataclasses import replace

    from models.experiments.world_v2 import V2Config, collect_runs, in_world

    niceness = 0
    recorded = runs / "all.json"
    if recorded.exists():
        saved = json.loads(recorded.read_text())
        steps, eval_users = int(saved["config"]["run"]["steps"]), int(saved["config"]["eval_users"])
        niceness = int(saved.get("niceness", 0))
    base = _stage_scored(in_world(V2Config(), world), stage_score)
    config = replace(base, methods=methods, eval_users=eval_users, run=replace(base.run, steps=steps))
    record = collect_runs(runs, config, seconds=0.0, seeds=seeds)
    record["niceness"] = niceness
    if len(record["per_seed"]) < 2:
        raise typer.BadParameter(f"fewer than 2 complete seeds in {runs}", param_hint="--runs")
    return record


@app.command()
def experiment(
    name: Annotated[
        str,
        typer.Argument(
            help="'calibrate' (simulator v2's calibration table), 'sweep' (its unanchored parameters), 'headroom' "
            "(one constant per observable group over one, --eval-users users per world), 'v2' (the "
            "methods and baselines in simulator v2), 'report' (re-render RESULTS.md from a v2 run), 'heldout' (the "
            "demo against the best constant on --seeds of a v2 run folder), 'stages' (how far the stages' heads "
            "disagree, v2.1 and v2.2, no learning) or 'seeds' (v1)"
        ),
    ] = "v2",
    seeds: SeedsOption = "0-9",
    steps: Annotated[int, typer.Option(help="Updates per method (the same for every method)")] = 300,
    methods: Annotated[str, typer.Option(help="v2: comma-separated methods (default: all, most important first)")] = "",
    eval_users: Annotated[int, typer.Option(help="v2: fixed users each method is evaluated on, per seed")] = 500,
    workers: Annotated[int, typer.Option(help="Seeds trained in parallel processes")] = 1,
    world: Annotated[
        str,
        typer.Option(
            help="calibrate, sweep, headroom, v2, report, heldout: SIMULATOR.md's world, 'v2', 'v2.1' or 'v2.2' "
            "(v2.1 with stage heads that disagree)"
        ),
    ] = "v2",
    resume: Annotated[bool, typer.Option(help="v2: keep the (seed, method) results already in --runs")] = False,
    stage_score: Annotated[
        str,
        typer.Option(
            help="v2/report: score the stages on 'predictions' or 'logits' instead of as the world does (v2.2: "
            "logits, the others: predictions), an ablation named in the report"
        ),
    ] = "",
    section: Annotated[
        str,
        typer.Option(
            help="v2/report: write this run as RESULTS.md section KEY (e.g. methods:stages) instead of the main table, "
            "for methods run apart from it (their baselines beside them); heldout: the section key to write"
        ),
    ] = "",
    runs: Annotated[Path, typer.Option(help="Run folder: config, seed, curves, metrics")] = Path("runs/experiment-v2"),
    results: Annotated[Path, typer.Option(help="Where to write the results (a PNG lands beside it)")] = Path(
        "RESULTS.md"
    ),
) -> None:
    """Calibrate simulator v2, or train and evaluate the methods on explicit seeds and write RESULTS.md."""
    from dataclasses import replace

    from models.reports.stats import format_seeds, parse_seeds

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--seeds") from error
    world = _world(world, ("v2", "v2.1", "v2.2"))
    # The world is named in every command a report prints, so a reader can rerun it.
    in_world_flag = "" if world == "v2" else f" --world {world}"
    if section and re.fullmatch(r"[a-z0-9]+:[a-z0-9_]+", section) is None:
        raise typer.BadParameter("lowercase letters or digits, a colon, then those or _", param_hint="--section")
    if name == "calibrate":
        from models.reports.calibration import calibration_markdown

        typer.echo(calibration_markdown(seed_list))
        return
    if name == "sweep":
        from models.experiments.sweep import sweep_markdown
        from models.reports.sections import update_section

        text = sweep_markdown(seed_list, world_name=world)
        update_section(results, _section_key("sim:sweep", world), text)
        typer.echo(text)
        return
    if name == "headroom":
        from models.experiments.sweep import headroom_markdown
        from models.reports.sections import update_section

        text = headroom_markdown(seed_list, eval_users, world)
        update_section(results, _section_key("sim:headroom", world), text)
        typer.echo(text)
        return
    if name == "stages":
        from models.experiments.stage_agreement import agreement_markdown
        from models.reports.sections import update_section

        text = agreement_markdown(seed_list)
        update_section(results, section or "sim:stages", text)
        typer.echo(text)
        return
    if name == "signal":
        from models.experiments.a3c_signal import signal_markdown
        from models.reports.sections import update_section

        text = signal_markdown(seed_list)
        update_section(results, "demo:signal", text)
        typer.echo(text)
        return
    if name == "heldout":
        from models.reports.sections import update_section
        from models.reports.world_v2 import held_out_markdown

        chosen = tuple(m for m in methods.split(",") if m) or ("uniform", "cem_session", "a3c_gamma_0.95", "demo_a3c")
        record = _complete_v2_runs(runs, chosen, eval_users, steps, seed_list, world)
        command = (
            f"{_niceness(record.get('niceness', 0))}cascade experiment v2{in_world_flag} "
            f"--seeds {format_seeds(list(map(int, record['per_seed'])))} "
            f"--methods {','.join(chosen)} --steps {record['config']['run']['steps']} "
            f"--eval-users {record['config']['eval_users']}; "
            f"cascade experiment heldout{in_world_flag} --seeds {seeds}"
        )
        key = section or _section_key("demo:heldout", world)
        update_section(results, key, held_out_markdown(record, command + (f" --section {section}" if section else "")))
        typer.echo(f"wrote the held-out section of {results}")
        return
    if name in ("v2", "report"):
        from models.experiments.world_v2 import ALL_METHODS, V2Config, in_world, run_experiment
        from models.reports.world_v2 import write_results

        chosen = tuple(m for m in methods.split(",") if m) or ALL_METHODS
        unknown = set(chosen) - set(ALL_METHODS)
        if unknown:
            raise typer.BadParameter(f"unknown methods {sorted(unknown)}; known: {', '.join(ALL_METHODS)}")
        if name == "v2":
            if len(seed_list) < 2:
                raise typer.BadParameter("at least 2 seeds for a paired interval", param_hint="--seeds")
            base = _stage_scored(in_world(V2Config(), world), stage_score)
            config = replace(
                base,
                seeds=seed_list,
                methods=chosen,
                eval_users=eval_users,
                run=replace(base.run, steps=steps),
                resume=resume,
            )
            record = run_experiment(config, runs, workers=workers)
        else:
            # Re-render from the per-seed folders: every seed of --seeds whose chosen methods all finished.
            record = _complete_v2_runs(runs, chosen, eval_users, steps, seed_list, world, stage_score)
        scored = record["config"].get("stage_score", "predictions")
        ablation = "" if scored == in_world(V2Config(), world).stage_score else f" --stage-score {scored}"
        command = (
            f"{_niceness(record.get('niceness', 0))}cascade experiment v2{in_world_flag} "
            f"--seeds {format_seeds(list(map(int, record['per_seed'])))} "
            f"--methods {','.join(record['config']['methods'])} "
            f"--steps {record['config']['run']['steps']} --eval-users {record['config']['eval_users']}{ablation}"
        )
        if section:
            from models.reports.sections import update_section
            from models.reports.world_v2 import section_markdown, world_section_markdown

            command += f" --section {section}"
            if section.startswith("world:"):  # a whole run in another world, beside the main table
                text = world_section_markdown(record, command, section)
            else:
                text = section_markdown(record, command, f"Methods run apart from the main table (simulator {world})")
            path = update_section(results, section, text)
        else:
            path = write_results(record, results, command)
        typer.echo(f"wrote {path}; runs in {runs}")
        return
    if name != "seeds":
        raise typer.BadParameter(
            f"unknown experiment {name!r}; known: calibrate, sweep, headroom, signal, stages, heldout, v2, report, "
            "seeds"
        )
    if len(seed_list) < 3:
        raise typer.BadParameter("at least 3 seeds", param_hint="--seeds")
    from export.method_bundle import export_method_bundle
    from models.experiments.session_methods import ExperimentConfig
    from models.experiments.session_methods import run_experiment as run_v1

    v1 = ExperimentConfig()
    config_v1 = replace(v1, seeds=seed_list, run=replace(v1.run, steps=steps, progress=workers == 1))
    path = run_v1(config_v1, runs, results, workers=max(workers, 1), exporter=export_method_bundle)
    typer.echo(f"wrote {path} and {path.with_name('results.png')}; runs in {runs}")


@app.command("offline-experiment")
def offline_experiment(
    name: Annotated[
        str, typer.Argument(help="'ope' (OPE vs the truth), 'resact' (seed 004) or 'enhanced' (EnhancedRL, seed 003)")
    ],
    seeds: SeedsOption = "0-2",
    world: Annotated[str, typer.Option(help="'v1', 'v2' or 'v2.1' (SIMULATOR.md's worlds)")] = "v1",
    runs: Annotated[Path, typer.Option(help="Run folder; <runs>/<name>/all.json holds every number")] = Path("runs"),
    results: Annotated[Path, typer.Option(help="RESULTS.md whose section for this experiment is replaced")] = Path(
        "RESULTS.md"
    ),
    section: Annotated[
        str | None,
        typer.Option(help="RESULTS.md section key (default offline:<name>), e.g. offline:ope_v21 beside the v2 one"),
    ] = None,
) -> None:
    """Run one of the offline experiments (logged data) over seeds and write its section of RESULTS.md."""
    from models.reports.stats import parse_seeds

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--seeds") from error
    if len(seed_list) < 3:
        raise typer.BadParameter("at least 3 seeds", param_hint="--seeds")
    import json
    import time
    from dataclasses import replace

    from models.env.offline_data import in_world
    from models.experiments import enhanced_rl, ope_validation, resact_offline
    from models.reports.offline import enhanced_section, machine, ope_section, resact_section
    from models.reports.sections import update_section

    chosen = _world(world)
    key = section or f"offline:{name}"
    if not key.startswith("offline:"):
        raise typer.BadParameter("a key of the form offline:<name>", param_hint="--section")
    ope = ope_validation.OPEValidationConfig()
    resact = resact_offline.ResActExperimentConfig()
    enhanced = enhanced_rl.EnhancedExperimentConfig()
    experiments: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any], str], str]]] = {
        "ope": (
            lambda: ope_validation.run(replace(ope, seeds=seed_list, offline=in_world(ope.offline, chosen))),
            ope_section,
        ),
        "resact": (
            lambda: resact_offline.run(replace(resact, seeds=seed_list, offline=in_world(resact.offline, chosen))),
            resact_section,
        ),
        "enhanced": (
            lambda: enhanced_rl.run(
                replace(
                    enhanced,
                    seeds=seed_list,
                    enhanced=replace(enhanced.enhanced, offline=in_world(enhanced.enhanced.offline, chosen)),
                )
            ),
            enhanced_section,
        ),
    }
    if name not in experiments:
        raise typer.BadParameter(f"unknown experiment {name!r}; known: {', '.join(experiments)}")
    run, render = experiments[name]
    record = run()
    record["world"] = chosen  # the section's title names it
    record["machine"] = machine()
    record["cpu_seconds"] = time.process_time()  # the wall time depends on who else uses the 2 cores
    folder = runs / key.removeprefix("offline:")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all.json").write_text(json.dumps(record, indent=1, default=str))
    command = f"{_niceness()}cascade offline-experiment {name} --seeds {seeds} --world {world}"
    command += f" --section {key}" if section else ""
    update_section(results, key, render(json.loads((folder / "all.json").read_text()), command))
    typer.echo(f"wrote the {name} section of {results}; numbers in {folder / 'all.json'}")


@app.command("export-actors")
def export_actors(
    out: Annotated[Path, typer.Argument(help="Bundle folder to write (cascade + resact + item_fusion graphs)")],
    seed: Annotated[int, typer.Option(help="Simulator and training seed")] = 0,
) -> None:
    """Train ResAct and EnhancedRL on the simulator and export them beside a cascade graph, as one bundle."""
    import torch

    from pipelines.actor_bundle import build_actor_bundle

    torch.set_num_threads(1)  # small networks: a second thread only contends on the shared cores
    manifest = build_actor_bundle(out, seed=seed)
    for name, actor in manifest.actors.items():
        typer.echo(
            f"{name}: {manifest.graphs[actor.graph].file}, parity max abs error {actor.parity.max_abs_error:.2e}"
        )
    typer.echo(f"wrote {out}")


@app.command()
def loop(
    iterations: Annotated[
        int, typer.Option(help="Train → gate → publish rounds (a last phase measures the result)")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the demo policy, the simulated users and training")] = 0,
    requests: Annotated[int, typer.Option(help="Simulated requests per phase")] = 3000,
    runs: Annotated[Path, typer.Option(help="Run folder: its own fresh store, Redis, logs, bundles, loop.png")] = Path(
        "runs/loop"
    ),
    margin: Annotated[
        float, typer.Option(help="Publish only if the OPE lower bound of candidate − active exceeds this share")
    ] = 0.0,
    estimator: Annotated[str, typer.Option(help="The gate's estimator: dr, snips, ncis or ips")] = "dr",
    trainer: Annotated[str, typer.Option(help="replay (MTL-prediction reward model) or logged (logged rewards)")] = (
        "replay"
    ),
    world: Annotated[
        str,
        typer.Option(help="'v1', or 'v2' / 'v2.1' (the session-trained demo of SIMULATOR.md's worlds, slates of 6)"),
    ] = "v1",
) -> None:
    """The closed loop against the simulator: serve over HTTP, log, join rewards, train, OPE gate, publish."""
    from dataclasses import replace

    from pipelines.loop import LoopConfig, run_loop, v2_loop_config

    chosen = _world(world)
    config = replace(
        LoopConfig() if chosen == "v1" else v2_loop_config(seed, chosen),
        iterations=iterations,
        seed=seed,
        requests_per_phase=requests,
        trainer=trainer,
        gate=replace(LoopConfig().gate, estimator=estimator, margin=margin),
    )
    run_dir = runs / f"seed-{seed}"
    reports = run_loop(config, run_dir, echo=typer.echo)
    first, last = reports[0].phase["true_return"], reports[-1].phase["true_return"]
    typer.echo(f"true return: first version {first:.3f}, last {last:.3f}; {run_dir / 'loop.png'}")


@app.command("loop-results")
def loop_results(
    seconds: Annotated[float, typer.Option(help="Measured wall time of the runs, for the record")],
    command: Annotated[str, typer.Option(help="The command that produced the runs, for the record")],
    machine: Annotated[str, typer.Option(help="Machine and its load while the runs ran")],
    runs: Annotated[Path, typer.Option(help="Folder of seed-*/loop.json")] = Path("runs/loop"),
    results: Annotated[Path, typer.Option(help="RESULTS.md to update (the plot lands beside it)")] = Path("RESULTS.md"),
    section: Annotated[
        str, typer.Option(help="Section of RESULTS.md: 'loop', or one per world such as 'loop:v21'")
    ] = "loop",
) -> None:
    """Render a loop section of RESULTS.md (and its plot) from `cascade loop` runs over ≥ 3 seeds."""
    from models.reports.loop import plot_name, write_loop_results

    path = write_loop_results(runs, results, command, seconds, machine, section)
    typer.echo(f"wrote section {section} of {path} and {path.with_name(plot_name(section))}")


@app.command()
def serve(
    store: StoreOption = Path("store"),
    # From the environment too, so the image, Compose and Kubernetes set them without a shell line.
    host: Annotated[str, typer.Option(help="Bind address", envvar="CASCADE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port", envvar="CASCADE_PORT")] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core)", envvar="CASCADE_WORKERS")
    ] = None,
) -> None:
    """Serve the active version over HTTP. Without REDIS_URL an embedded Redis is started here.

    The server is granian unless CASCADE_SERVER=uvicorn; its connection limits are settings
    (CASCADE_HEADER_READ_TIMEOUT_SECONDS, CASCADE_MAX_HEADER_BYTES, ...; RELIABILITY.md).
    """
    from archive.child import start_archiver, stop_archiver
    from service.embedded_redis import EmbeddedRedis
    from service.server import run_server
    from service.settings import Settings

    os.environ["CASCADE_STORE"] = str(store)
    settings = Settings()
    embedded = None
    archiver = None
    if settings.redis_url is None:
        # One embedded server for all workers, owned by this parent process.
        embedded = EmbeddedRedis(settings.embedded_redis_dir)
        os.environ["CASCADE_REDIS_URL"] = embedded.url
        typer.echo(f"embedded Redis at {embedded.url}")
        # The embedded Redis is a buffer: an archiver child drains it into the lake and trims it.
        archiver = start_archiver(embedded.url)
    # The servers re-raise SIGTERM on themselves after a clean shutdown, which would kill this process
    # before `finally` stops the embedded Redis; exiting through SystemExit lets the cleanup run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_server(settings, host, port, workers or os.cpu_count() or 1)
    finally:
        if archiver is not None:
            stop_archiver(archiver)  # before Redis: it writes what it holds and acknowledges it
        if embedded is not None:
            embedded.stop()


@app.command()
def archive(
    lake: Annotated[Path, typer.Option(help="Root folder of the Parquet lake", envvar="CASCADE_ARCHIVE_LAKE")] = Path(
        "lake"
    ),
    once: Annotated[bool, typer.Option(help="Archive what the streams hold now, then exit")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
) -> None:
    """Archive the decision and feedback streams (every shard) into a Parquet lake; trim what is archived."""
    from archive.main import run
    from archive.settings import ArchiveSettings

    settings = ArchiveSettings(lake=lake)
    counters = run(settings, once=once, max_seconds=max_seconds)
    archived = ", ".join(f"{n} {dataset}" for dataset, n in sorted(counters.archived.items())) or "nothing"
    typer.echo(
        f"archived {archived} into {lake} ({counters.files} files); "
        f"{counters.dead_lettered} dead-lettered, {counters.trimmed} trimmed from Redis"
    )


@app.command()
def report(
    lake: Annotated[Path, typer.Option(help="Root folder of the Parquet lake", envvar="CASCADE_ARCHIVE_LAKE")] = Path(
        "lake"
    ),
    out: Annotated[Path, typer.Option(help="Folder for report.md and its plots")] = Path("runs/report"),
    window: Annotated[float, typer.Option(help="Reward window, seconds (the service's)")] = 600.0,
    rule: Annotated[str, typer.Option(help="sum or first")] = "sum",
    default_reward: Annotated[float, typer.Option(help="Reward of a decision without on-time feedback")] = 0.0,
    weight: Annotated[
        list[str] | None, typer.Option(help="SIGNAL=WEIGHT, repeatable; none given: every signal weighs 1")
    ] = None,
) -> None:
    """Per policy version and arm: decisions, join rate, reward, exploration, action spread, propensities, ESS."""
    from models.log.reward_join import JoinConfig
    from models.reports.lake import write_report

    if rule not in ("sum", "first"):
        raise typer.BadParameter("rule must be sum or first")
    weights = {}
    for item in weight or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--weight {item!r}: expected SIGNAL=WEIGHT")
        weights[name] = float(value)
    config = JoinConfig(window, "first" if rule == "first" else "sum", default_reward, weights)
    typer.echo(f"wrote {write_report(lake, out, config)}")


@app.command()
def publish(
    bundle: Annotated[Path, typer.Argument(help="Folder of an exported bundle (manifest.json + graphs)")],
    store: StoreOption = Path("store"),
    activate: Annotated[bool, typer.Option(help="Serve it now (routing in Redis, if REDIS_URL is set)")] = True,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            help="Ed25519 private key (PEM) to sign the manifest with [env CASCADE_SIGNING_KEY; "
            "default: the store's local demo key, made on first use]"
        ),
    ] = None,
) -> None:
    """Verify a bundle, copy it into the store and (optionally) make it the served version.

    The stored copy's manifest is signed (Ed25519) before anything can route to it. With --activate the
    store's durable routing (ROUTING.json and ACTIVE) is updated; with REDIS_URL set, the live routing
    in Redis is updated too and every worker swaps.
    """
    import asyncio

    from export.signing import publish_signed
    from export.signing import signing_key as key_for
    from service.bundle import load_bundle
    from service.redis_connection import connect
    from service.routing import RoutingStore
    from service.settings import Settings

    loaded = load_bundle(bundle)  # refuse before copying: hashes, graph signature, warm-up
    manifest = publish_signed(bundle, store, key_for(store, signing_key), activate=activate)
    typer.echo(f"published {manifest.policy}/{manifest.version} into {store} (verified: {loaded.version})")
    settings = Settings()
    if activate and settings.redis_url:

        async def route() -> None:
            redis = connect(settings.redis_url or "", settings.redis_cluster)  # one server or a cluster
            try:
                routing = RoutingStore(redis, store, settings.routing_namespace)
                await routing.activate(manifest.policy, manifest.version)
            finally:
                await redis.aclose()

        asyncio.run(route())
        typer.echo(f"routing: {manifest.policy} now serves {manifest.version}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmark: compute limit vs cascade-serve vs naive baseline (options: python -m loadtest.bench.run -h)."""
    from loadtest.bench.run import main

    raise typer.Exit(main(ctx.args))


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
