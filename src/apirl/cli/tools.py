"""`apirl data stats|split`, `apirl eval responses|gorilla|compare`, `apirl exec check|gold|mutants`: tools
on the Gorilla data and on any responses file, outside a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from apirl.cli.options import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    console,
    data_app,
    eval_app,
    exec_app,
    friendly_errors,
    print_json,
    run_config,
    writable_details,
)
from apirl.config import RunConfig
from apirl.errors import InputError


@data_app.command("stats")
@friendly_errors
def data_stats_cmd(config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Counts per split, domain and provenance, and the records skipped or flagged."""
    from apirl.data.dataset import build_examples, data_stats, load_gorilla
    from apirl.data.report import print_stats

    cfg = run_config(config, set_)
    data = load_gorilla(cfg.data)
    stats = data_stats(data, build_examples(data, cfg.data))
    if as_json:
        print_json(stats)
    else:
        print_stats(stats, console)


@data_app.command("split")
@friendly_errors
def data_split_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                   check: Annotated[bool, typer.Option(help="Only verify the committed split files.")] = False
                   ) -> None:
    """(Re)generate data/splits/{train,val,test}.txt from the eval questions, or --check them."""
    from apirl.data.dataset import load_gorilla
    from apirl.data.splits import SPLITS, make_splits, read_split, write_splits

    cfg = run_config(config, set_)
    data = load_gorilla(cfg.data)
    domains = {qid: data.records[qid].gold_domain for qid in data.question_ids}
    splits = make_splits(domains, seed=cfg.data.split_seed, val_fraction=cfg.data.val_fraction,
                         test_fraction=cfg.data.test_fraction)
    if check:
        differing = [name for name in SPLITS if read_split(cfg.data.split_dir, name) != splits[name]]
        if differing:
            raise InputError(f"committed splits differ from a fresh split: {', '.join(differing)}",
                             path=cfg.data.split_dir)
        console.print(f"splits in {cfg.data.split_dir} match seed {cfg.data.split_seed}")
        return
    header = (f"apirl split of the eval question ids: seed={cfg.data.split_seed} val={cfg.data.val_fraction} "
              f"test={cfg.data.test_fraction}, stratified by gold domain; regenerate with `apirl data split`")
    write_splits(cfg.data.split_dir, splits, header)
    console.print({name: len(ids) for name, ids in splits.items()})


@eval_app.command("responses")
@friendly_errors
def eval_responses_cmd(
    file: Annotated[Path, typer.Argument(help="JSONL with question_id and text.")],
    split: Annotated[str | None, typer.Option(help="test (data/splits/test.txt) or all.")] = None,
    mode: Annotated[str | None, typer.Option(help="gorilla (default) or strict: fills the headline keys.")] = None,
    details: Annotated[Path | None, typer.Option(help="Write per-response verdicts to this JSONL.",
                                                 callback=writable_details)] = None,
    execute: Annotated[bool, typer.Option("--exec", help="Also run the code: executability (bound) and "
                                          "executability_strict.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Score one responses file: AST accuracy / hallucination / error (both modes), ROUGE, CodeBLEU."""
    from apirl.data.dataset import load_gorilla
    from apirl.evaluate.stage import evaluate_file

    cfg = run_config(config, _with_eval_options(set_, split, mode))
    data = load_gorilla(cfg.data)
    summary, rows = evaluate_file(file, cfg.eval, data, cfg.data.split_dir, limit=cfg.eval.limit,
                                  execution=cfg.execution if execute else None)
    if details is not None:
        from apirl.jsonl import write_jsonl

        write_jsonl(details, rows)
    if as_json:
        print_json(summary)
        return
    from apirl.evaluate.tables import per_domain_table, results_table

    print(results_table([(file.name, summary)]))
    print(f"\n{summary['n']} responses, split {cfg.eval.split}, {summary['seconds']} s")
    if execute:
        print(f"executability: {100 * summary['executability']:.1f}% bound, "
              f"{100 * summary['executability_api']:.1f}% bound with the API, "
              f"{100 * summary['executability_strict']:.1f}% strict; bound failures {summary['exec_failures']}")
    if summary["missing_responses"]:
        console.print(f"[yellow]{summary['missing_responses']} questions of the split had no response "
                      "(scored as empty)[/]")
    print("\n" + per_domain_table(summary))


@eval_app.command("gorilla")
@friendly_errors
def eval_gorilla_cmd(
    split: Annotated[str | None, typer.Option(help="test or all.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Score Gorilla-7B's eight published response files (the anchor rows) on one split."""
    from apirl.data.dataset import load_gorilla
    from apirl.evaluate.stage import evaluate_gorilla_anchors
    from apirl.evaluate.tables import results_table

    cfg = run_config(config, _with_eval_options(set_, split, None))
    results = evaluate_gorilla_anchors(cfg.eval, load_gorilla(cfg.data), cfg.data.split_dir)
    if as_json:
        print_json(dict(results))
        return
    print(f"Gorilla-7B published responses, split {cfg.eval.split}, mode {cfg.eval.mode}:\n")
    print(results_table(results))


@eval_app.command("floor")
@friendly_errors
def eval_floor_cmd(
    out: Annotated[Path | None, typer.Option(help="Also write the floors (with per-question hits) here.")] = None,
    cv: Annotated[int, typer.Option(help="Also cross-validate on the train questions in this many folds "
                                         "(0: no).")] = 0,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """The domain floor: TF-IDF + logistic regression on the train requests, domain accuracy on test (and, with
    --cv, on held-out train questions: how far the labels let a classifier go)."""
    import json

    from apirl.data.dataset import build_examples, load_gorilla
    from apirl.evaluate.floor import cross_validated_floor, domain_floors

    cfg = run_config(config, set_)
    splits = build_examples(load_gorilla(cfg.data), cfg.data)
    floors = domain_floors(splits["train"], splits["test"], samples=cfg.eval.bootstrap_samples, seed=cfg.seed)
    held_out = {"train_questions_cv": cross_validated_floor(splits["train"], folds=cv, seed=cfg.seed)} if cv else {}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**floors, **held_out}, indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json({name: {k: v for k, v in floor.items() if k != "hits"}
                    for name, floor in {**floors, **held_out}.items()})
        return
    if held_out:
        cross = held_out["train_questions_cv"]
        print(f"train questions, {cv}-fold: {100 * cross['questions_only']:.1f}% from the other questions, "
              f"{100 * cross.get('with_synthesized', float('nan')):.1f}% with {cross['synthesized']} "
              "synthesized requests added")
    for name, floor in floors.items():
        low, high = floor["ci"]
        print(f"{name}: {floor['train_examples']} training requests -> gold domain of "
              f"{100 * floor['domain_accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] of "
              f"{floor['test_questions']} test questions")


@eval_app.command("compare")
@friendly_errors
def eval_compare_cmd(
    base: Annotated[Path, typer.Argument(help="Details JSONL of the reference model (e.g. eval/details/sft.jsonl).")],
    others: Annotated[list[Path], typer.Argument(help="Details JSONL of each model to compare with it.")],
    mode: Annotated[str, typer.Option(help="gorilla or strict: which AST outcome counts.")] = "gorilla",
    samples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Each model minus the reference on the same questions, with paired bootstrap 95% intervals."""
    from dataclasses import asdict

    from apirl.evaluate.paired import COMPARISON_HEADER, compare, comparison_row, load_details
    from apirl.evaluate.tables import markdown_table

    reference = load_details(base)
    results = {str(path): compare(reference, load_details(path), mode=mode, samples=samples, seed=seed,
                                  names=(str(base), str(path)))
               for path in others}
    if as_json:
        print_json({"base": str(base), "mode": mode, "samples": samples, "seed": seed,
                     "differences": {name: [asdict(d) for d in diffs] for name, diffs in results.items()}})
        return
    print(markdown_table(COMPARISON_HEADER, [comparison_row(Path(name).stem, base.stem, diffs)
                                             for name, diffs in results.items()]))
    print(f"\nPoints, model minus {base.stem}, on the same {len(reference)} questions; [paired bootstrap 95% "
          f"interval, {samples} resamples]; for 0/1 metrics (+questions where only the model has it / -where only "
          f"{base.stem} has it, exact McNemar p).")


ExecModeOpt = Annotated[str | None, typer.Option("--mode", help="bound (default: inputs bound) or strict.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Parallel sandbox workers.")]
DetailsOpt = Annotated[Path | None, typer.Option(help="Write per-snippet verdicts to this JSONL.",
                                                 callback=writable_details)]


def _exec_config(config: Path | None, set_: list[str] | None, split: str | None, mode: str | None,
                 workers: int | None) -> RunConfig:
    overrides = _with_eval_options(set_, split, None)
    if mode is not None:
        overrides.append(f'execution.mode="{mode}"')
    if workers is not None:
        overrides.append(f"execution.workers={workers}")
    return run_config(config, overrides)


def _exec_questions(cfg: RunConfig) -> tuple[list[int], Any]:
    """(the questions `[eval]` scores: its split and limit, the Gorilla data) for `apirl exec`."""
    from apirl.data.dataset import load_gorilla
    from apirl.data.splits import scored_question_ids

    data = load_gorilla(cfg.data)
    return scored_question_ids(cfg.eval.split, cfg.data.split_dir, data.question_ids, cfg.eval.limit), data


def _print_exec(summary: dict[str, Any], title: str) -> None:
    print(f"{title}: {summary['ok']}/{summary['n']} run = executability {100 * summary['executability']:.1f}% "
          f"({summary['mode']} mode, split {summary['split']}); over the {summary['supported']} snippets the "
          f"harness supports: {100 * summary['executability_supported']:.1f}%")
    for status, count in summary["failures"].items():
        print(f"  {status:20s} {count}")
    print(f"{summary['seconds']} s; isolation: " + ", ".join(k for k, v in summary["isolation"].items() if v))


def _write_verdicts(path: Path | None, verdicts: list[Any]) -> None:
    if path is not None:
        from apirl.jsonl import write_jsonl

        write_jsonl(path, (v.to_json() for v in verdicts))


@exec_app.command("check")
@friendly_errors
def exec_check_cmd(
    file: Annotated[Path, typer.Argument(help="Responses JSONL (question_id, text): the <<<code>>> sections run.")],
    split: Annotated[str | None, typer.Option(help="test or all.")] = None, mode: ExecModeOpt = None,
    workers: WorkersOpt = None, details: DetailsOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Executability of a responses file: how many code sections run to their last line."""
    from apirl.execution.stage import check_responses

    cfg = _exec_config(config, set_, split, mode, workers)
    ids, data = _exec_questions(cfg)
    summary, verdicts = check_responses(file, ids, data, cfg.execution)[cfg.execution.mode]
    summary = {"split": cfg.eval.split, **summary}
    _write_verdicts(details, verdicts)
    if as_json:
        print_json(summary)
    else:
        _print_exec(summary, file.name)


@exec_app.command("gold")
@friendly_errors
def exec_gold_cmd(
    split: Annotated[str | None, typer.Option(help="test or all.")] = None, mode: ExecModeOpt = None,
    workers: WorkersOpt = None, details: DetailsOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Executability of the gold <<<code>>> sections of the data: the harness's own ceiling."""
    from apirl.execution.stage import check_gold

    cfg = _exec_config(config, set_, split, mode, workers)
    summary, verdicts = check_gold(*_exec_questions(cfg), cfg.execution)
    summary = {"split": cfg.eval.split, **summary}
    _write_verdicts(details, verdicts)
    if as_json:
        print_json(summary)
    else:
        _print_exec(summary, "gold code")


@exec_app.command("mutants")
@friendly_errors
def exec_mutants_cmd(
    split: Annotated[str | None, typer.Option(help="test or all.")] = None, mode: ExecModeOpt = None,
    workers: WorkersOpt = None, details: DetailsOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Mutants of every gold snippet that runs (unknown model id, unknown name, unknown keyword, missing
    import, syntax error): the rate at which each kind is rejected."""
    from apirl.execution.stage import check_mutants

    cfg = _exec_config(config, set_, split, mode, workers)
    summary, verdicts = check_mutants(*_exec_questions(cfg), cfg.execution)
    summary = {"split": cfg.eval.split, **summary}
    _write_verdicts(details, verdicts)
    if as_json:
        print_json(summary)
        return
    print(f"gold snippets that run: {summary['gold_ok']}/{summary['gold_n']} ({summary['mode']} mode, "
          f"split {summary['split']}); {summary['mutants_n']} mutants, {summary['seconds']} s")
    for kind, row in summary["per_kind"].items():
        rate = "n/a" if row["rejection_rate"] is None else f"{100 * row['rejection_rate']:.1f}%"
        print(f"  {kind:18s} rejected {row['rejected']:4d}/{row['n']:<4d} {rate:>7s}  {row['statuses']}")


def _with_eval_options(overrides: list[str] | None, split: str | None, mode: str | None) -> list[str]:
    out = list(overrides or [])
    if split is not None:
        out.append(f'eval.split="{split}"')
    if mode is not None:
        out.append(f'eval.mode="{mode}"')
    return out
