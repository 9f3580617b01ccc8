"""``recops data generate``: write the deterministic synthetic shop data as daily batches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops data generate`` (nothing on the main app)."""
    del app
    data_app.command("generate")(generate)


def generate(
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: settings.landing_dir).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Daily batches (default: params generate.days).")
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", help="Shoppers over the period (default: generate.users).")
    ] = None,
    items: Annotated[
        int | None, typer.Option("--items", help="Items over the period (default: generate.items).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: generate.seed).")] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First day, YYYY-MM-DD (default: generate.start).")
    ] = None,
) -> None:
    """Generate synthetic shop events: one folder per UTC day with events.parquet and catalog.parquet."""
    from pydantic import ValidationError
    from tqdm import tqdm

    from core.settings import get_settings
    from pipelines.datasets import DayBatch, GeneratorConfig, generate_dataset
    from pipelines.params import GenerateParams, ParamsError, load_params

    settings = get_settings()
    defaults = load_params(settings.params_file).generate
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"days": days, "users": users, "items": items, "seed": seed, "start": start}.items()
        if v is not None
    }
    try:
        chosen = GenerateParams.model_validate({**defaults.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ParamsError(f"invalid generate option(s): {problems}") from exc
    config = GeneratorConfig.from_params(chosen)
    out_dir = out if out is not None else settings.landing_dir
    key = settings.pseudonymization_key.get_secret_value()

    with tqdm(total=config.days, unit="day", desc="generate", disable=None) as bar:

        def on_day(batch: DayBatch) -> None:
            bar.set_postfix_str(f"{batch.batch_id}: {len(batch.events):,} events")
            bar.update(1)

        summary = generate_dataset(config, out_dir, key, on_day=on_day)
    typer.echo(summary.line())
