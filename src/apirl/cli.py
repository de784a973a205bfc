"""The `apirl` command line: thin wrappers that load a config, call one stage, and print the result."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from apirl.config import RunConfig, load_config
from apirl.errors import InputError
from apirl.jsonl import check_writable

# No rich markup in help texts: they name config tables in brackets (`[rl]`), which markup would swallow.
PLAIN_HELP = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(help="apirl: RL from AI feedback for API-calling code LLMs.", pretty_exceptions_enable=False,
                  **PLAIN_HELP)
data_app = typer.Typer(help="The Gorilla data: statistics, splits, prepared examples.", **PLAIN_HELP)
eval_app = typer.Typer(help="Score responses files (AST match, ROUGE, CodeBLEU).", **PLAIN_HELP)
exec_app = typer.Typer(help="Executability: run code in the sandbox against the offline hub.", **PLAIN_HELP)
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
feedback_app = typer.Typer(help="AI feedback: sample from the policy, judge, label, pair; calibrate the judges.",
                            invoke_without_command=True, rich_markup_mode=None)
app.add_typer(exec_app, name="exec")
app.add_typer(feedback_app, name="feedback")

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (configs/*.toml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set data.seed=3.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Train again even if an identical run finished; discards "
                                                        "checkpoints.")]
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn InputError into a one-line message and exit code 2 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]


def _writable_details(path: Path | None) -> Path | None:
    """--details is checked before any scoring runs, so a bad destination costs nothing."""
    if path is not None:
        try:
            check_writable(path, what="details file")
        except InputError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return path


def _config(config: Path | None, overrides: list[str] | None) -> RunConfig:
    return load_config(config, overrides or [])


def _prepare_data(cfg: RunConfig) -> Any:
    """The data stage, which every later stage reads (skipped when up to date)."""
    from apirl.data.stage import prepare_data

    return prepare_data(cfg.data, cfg.layout, cfg.seed)


def _summary(result: Any) -> dict[str, Any]:
    """A stage's summary: the manifest's, else (a manifest from before summaries were recorded) its summary file,
    else {}."""
    if result.summary is not None:
        return result.summary
    path = result.stage_dir / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


@data_app.command("stats")
@friendly_errors
def data_stats_cmd(config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Counts per split, domain and provenance, and the records skipped or flagged."""
    from apirl.data.dataset import build_examples, data_stats, load_gorilla
    from apirl.data.report import print_stats

    cfg = _config(config, set_)
    data = load_gorilla(cfg.data)
    stats = data_stats(data, build_examples(data, cfg.data))
    if as_json:
        _print_json(stats)
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

    cfg = _config(config, set_)
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


@data_app.command("prepare")
@friendly_errors
def data_prepare_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                     force: Annotated[bool, typer.Option(help="Redo even if up to date.")] = False) -> None:
    """Write the examples of every split to runs/<name>/data/ (the input of SFT and feedback)."""
    from apirl.data.stage import prepare_data

    cfg = _config(config, set_)
    result = prepare_data(cfg.data, cfg.layout, cfg.seed, force=force)
    state = "up to date, skipped" if result.skipped else f"done in {result.manifest['wall_time_s']} s"
    console.print(f"data stage {state}: {result.stage_dir}")


@eval_app.command("responses")
@friendly_errors
def eval_responses_cmd(
    file: Annotated[Path, typer.Argument(help="JSONL with question_id and text.")],
    split: Annotated[str | None, typer.Option(help="test (data/splits/test.txt) or all.")] = None,
    mode: Annotated[str | None, typer.Option(help="gorilla (default) or strict: fills the headline keys.")] = None,
    details: Annotated[Path | None, typer.Option(help="Write per-response verdicts to this JSONL.",
                                                 callback=_writable_details)] = None,
    execute: Annotated[bool, typer.Option("--exec", help="Also run the code: executability (bound) and "
                                          "executability_strict.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Score one responses file: AST accuracy / hallucination / error (both modes), ROUGE, CodeBLEU."""
    from apirl.data.dataset import load_gorilla
    from apirl.evaluate.stage import evaluate_file

    cfg = _config(config, _with_eval_options(set_, split, mode))
    data = load_gorilla(cfg.data)
    summary, rows = evaluate_file(file, cfg.eval, data, cfg.data.split_dir, limit=cfg.eval.limit,
                                  execution=cfg.execution if execute else None)
    if details is not None:
        from apirl.jsonl import write_jsonl

        write_jsonl(details, rows)
    if as_json:
        _print_json(summary)
        return
    from apirl.evaluate.tables import per_domain_table, results_table

    print(results_table([(file.name, summary)]))
    print(f"\n{summary['n']} responses, split {cfg.eval.split}, {summary['seconds']} s")
    if execute:
        print(f"executability: {100 * summary['executability']:.1f}% bound, "
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

    cfg = _config(config, _with_eval_options(set_, split, None))
    results = evaluate_gorilla_anchors(cfg.eval, load_gorilla(cfg.data), cfg.data.split_dir)
    if as_json:
        _print_json(dict(results))
        return
    print(f"Gorilla-7B published responses, split {cfg.eval.split}, mode {cfg.eval.mode}:\n")
    print(results_table(results))


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
        _print_json({"base": str(base), "mode": mode, "samples": samples, "seed": seed,
                     "differences": {name: [asdict(d) for d in diffs] for name, diffs in results.items()}})
        return
    print(markdown_table(COMPARISON_HEADER, [comparison_row(Path(name).stem, base.stem, diffs)
                                             for name, diffs in results.items()]))
    print(f"\nPoints, model minus {base.stem}, on the same {len(reference)} questions; [paired bootstrap 95% "
          f"interval, {samples} resamples]; for 0/1 metrics (+questions where only the model has it / -where only "
          f"{base.stem} has it, exact McNemar p).")


@eval_app.command("run")
@friendly_errors
def eval_run_cmd(
    labels: Annotated[list[str] | None, typer.Option("--label", help="A model's responses in the run "
                                                     "(generate/<label>/); default: every one there.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Score again even if up to date.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """The eval stage: score the run's responses (runs/<name>/generate/*) with every metric, executability
    included, beside Gorilla-7B on the same questions; writes runs/<name>/eval/ with its manifest."""
    from apirl.evaluate.stage import run_eval
    from apirl.evaluate.tables import results_table

    cfg = _config(config, set_)
    found = sorted(path.parent.name for path in (cfg.layout.root / "generate").glob("*/responses.jsonl"))
    chosen = labels or found
    if not chosen:
        raise InputError("no responses in the run: run `apirl generate` first", path=cfg.layout.root / "generate")
    result = run_eval(cfg.eval, cfg.execution, cfg.data, cfg.layout, cfg.seed, chosen, limit=cfg.generate.limit,
                      gorilla_exec=cfg.pipeline.gorilla_exec, force=force)
    summaries = result.summary or {}
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, "models": summaries})
        return
    print(results_table(list(summaries.items())))
    console.print(f"eval {'up to date, skipped' if result.skipped else 'done'}: {result.stage_dir}")


ExecModeOpt = Annotated[str | None, typer.Option("--mode", help="bound (default: inputs bound) or strict.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Parallel sandbox workers.")]
DetailsOpt = Annotated[Path | None, typer.Option(help="Write per-snippet verdicts to this JSONL.",
                                                 callback=_writable_details)]


def _exec_config(config: Path | None, set_: list[str] | None, split: str | None, mode: str | None,
                 workers: int | None) -> RunConfig:
    overrides = _with_eval_options(set_, split, None)
    if mode is not None:
        overrides.append(f'execution.mode="{mode}"')
    if workers is not None:
        overrides.append(f"execution.workers={workers}")
    return _config(config, overrides)


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
    from apirl.data.dataset import load_gorilla
    from apirl.execution.stage import check_responses, question_ids

    cfg = _exec_config(config, set_, split, mode, workers)
    data = load_gorilla(cfg.data)
    summary, verdicts = check_responses(file, question_ids(cfg, data), data, cfg.execution)[cfg.execution.mode]
    summary = {**summary, "split": cfg.eval.split}
    _write_verdicts(details, verdicts)
    if as_json:
        _print_json(summary)
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
    summary, verdicts = check_gold(cfg)
    _write_verdicts(details, verdicts)
    if as_json:
        _print_json(summary)
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
    summary, verdicts = check_mutants(cfg)
    _write_verdicts(details, verdicts)
    if as_json:
        _print_json(summary)
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


@app.command("generate")
@friendly_errors
def generate_cmd(
    model: Annotated[str | None, typer.Option(help="smollm2-135m, tiny-random, hf:<id-or-path>, or a directory "
                                                   "(an SFT/RL output).")] = None,
    label: Annotated[str | None, typer.Option(help="Name of the responses in the run (runs/<name>/generate/"
                                                   "<label>/); default: the model's stage or its spec.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also copy the responses (Gorilla's format) "
                                                                 "to this file.")] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples (0: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Generate again even if up to date.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Generate a model's responses to a split of the data stage, as a stage of the run (with its manifest);
    skipped when up to date, resumes an interrupted run of the same settings."""
    from apirl.models.stage import default_label, run_generate

    overrides = list(set_ or [])
    if model is not None:
        overrides.append(f"model.name={json.dumps(model)}")
    if split is not None:
        overrides.append(f"generate.split={json.dumps(split)}")
    if limit is not None:
        overrides.append(f"generate.limit={limit}")
    cfg = _config(config, overrides)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        check_writable(out, what="responses file")
    _prepare_data(cfg)
    result = run_generate(cfg.generate, cfg.model, cfg.layout, cfg.seed,
                          label or default_label(cfg.model.name, cfg.layout), force=force, console=err_console)
    summary = result.summary or {}
    responses = Path(summary.get("file") or result.stage_dir / "responses.jsonl")
    if out is not None:
        shutil.copyfile(responses, out)
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
    else:
        state = "up to date, skipped" if result.skipped else "done"
        console.print(f"generate {state}: {summary.get('n')} responses in {responses} ({summary.get('new_tokens')} "
                      f"new tokens, {summary.get('tokens_per_s')} tok/s); score it with: apirl eval responses "
                      f"{out or responses}")


@app.command("sft")
@friendly_errors
def sft_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Supervised fine-tuning (M_SFT) on the train split; the model lands in runs/<name>/sft/model."""
    from apirl.train.sft import run_sft

    cfg = _config(config, set_)
    _prepare_data(cfg)
    result = run_sft(cfg.sft, cfg.model, cfg.layout, cfg.seed, resume=resume, force=force)
    summary = _summary(result)
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
    else:
        state = "up to date, skipped" if result.skipped else "trained"
        console.print(f"M_SFT {state}: {result.stage_dir / 'model'} (steps {summary.get('steps')}, "
                      f"loss {summary.get('first_loss')} -> {summary.get('last_loss')}, "
                      f"val loss {summary.get('eval_loss')})")


@app.command("reward")
@friendly_errors
def reward_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the reward model on the feedback (classifier on the labels, or pairwise on the pairs); reports
    held-out accuracy and AUC and how often gold code outscores its mutants; lands in runs/<name>/reward/model."""
    from apirl.train.reward import run_reward

    cfg = _config(config, set_)
    _prepare_data(cfg)
    with redirect_stdout(sys.stderr):  # the Trainer prints its log lines on stdout: keep --json's stdout clean
        result = run_reward(cfg.reward, cfg.model, cfg.layout, cfg.seed, calibrate_split=cfg.feedback.calibrate_split,
                            mutant_seed=cfg.execution.mutant_seed, resume=resume, force=force)
    summary = _summary(result)
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "trained"
    gold = summary.get("gold_vs_mutant", {})
    console.print(f"reward model ({summary.get('kind')}) {state}: {result.stage_dir / 'model'} (steps "
                  f"{summary.get('steps')}, loss {summary.get('first_loss')} -> {summary.get('last_loss')})")
    if summary.get("fresh_weights"):
        console.print(f"fresh, seeded weights on top of {summary.get('base')}: {summary['fresh_weights']}")
    console.print(f"held out {summary.get('heldout_examples')} prompts / {summary.get('heldout_samples')} samples: "
                  f"accuracy {summary.get('heldout_accuracy')} ({summary.get('accuracy_of')}), "
                  f"AUC {summary.get('heldout_auc')}")
    console.print(f"gold above its mutants on {gold.get('split')} ({gold.get('examples')} examples, "
                  f"{gold.get('pairs')} pairs): {gold.get('rate')}; per kind "
                  + ", ".join(f"{kind} {row['rate']} (n={row['pairs']})"
                              for kind, row in gold.get("per_kind", {}).items()))


@app.command("rl")
@friendly_errors
def rl_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """RL fine-tuning of the policy: `rl.algorithm` = ppo, grpo, rloo (against the reward of [rl]) or dpo (on the
    feedback's preference pairs). The policy lands in runs/<name>/<algorithm>/model, the log in log.jsonl beside."""
    from apirl.train.rl import run_rl

    cfg = _config(config, set_)
    _prepare_data(cfg)
    with redirect_stdout(sys.stderr):
        result = run_rl(cfg, resume=resume, force=force)
    summary = _summary(result)
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "trained"
    if cfg.rl.algorithm == "dpo":
        progress = (f"loss {summary.get('first_loss')} -> {summary.get('last_loss')}, held-out preference accuracy "
                    f"{summary.get('heldout_preference_accuracy')}")
    else:
        progress = (f"reward {summary.get('first_reward')} -> {summary.get('last_reward')}, "
                    f"KL {summary.get('last_kl')}")
    console.print(f"{cfg.rl.algorithm} policy {state}: {result.stage_dir / 'model'} (steps {summary.get('steps')}, "
                  f"{progress})")


@app.command("run")
@friendly_errors
def run_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="First stage to run (data, sft, feedback, "
                                                                  "reward, rl, generate, eval, report).")] = None,
    until_stage: Annotated[str | None, typer.Option("--until", help="Last stage to run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The whole pipeline: data, SFT, AI feedback, reward model, RL, generation for every model, evaluation
    (executability included), report. Up-to-date stages are skipped; a killed run resumes where it stopped."""
    from apirl.pipeline.run import run_pipeline

    cfg = _config(config, set_)
    with redirect_stdout(sys.stderr):
        record = run_pipeline(cfg, from_stage=from_stage, until_stage=until_stage)
    if as_json:
        _print_json(record)
        return
    for stage in record["stages"]:
        console.print(f"{stage['name']:<24} {stage['status']:<8} {stage['seconds']:>8.1f} s")
    report = cfg.layout.report_html
    console.print(f"report: {report}" if report.is_file() else f"run directory: {cfg.run_dir}")


@app.command("report")
@friendly_errors
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report here instead of RUN_DIR.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.md and a self-contained report.html (plots embedded) from what RUN_DIR holds: results with
    95% intervals beside Gorilla-7B, training curves, judge calibration, cost per stage, config and versions."""
    from apirl.report import write_report

    files = write_report(run_dir, out)
    if as_json:
        _print_json({"run_dir": str(run_dir), "markdown": str(files.markdown), "html": str(files.html)})
    else:
        console.print(f"wrote {files.markdown} and {files.html}")


@contextmanager
def _judge_errors() -> Iterator[None]:
    """A judge server that is down or refuses requests: one line (what to check) instead of a traceback."""
    from apirl.feedback.openai_judge import JudgeRequestError, JudgeUnavailable

    try:
        yield
    except (JudgeUnavailable, JudgeRequestError) as exc:
        raise InputError(f"{exc} The answers judged so far are cached: the same command resumes.") from exc


@feedback_app.callback()
@friendly_errors
def feedback_cmd(
    ctx: typer.Context, config: ConfigOpt = None, set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Redo even if an identical run finished (samples and "
                                                        "cached judgments are still reused).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sample K completions per train prompt from the policy (M_SFT by default), judge every one, and write
    runs/<name>/feedback/{samples,feedback,pairs}.jsonl and summary.json; a killed run resumes."""
    if ctx.invoked_subcommand is not None:
        return
    from apirl.feedback.stage import run_feedback

    cfg = _config(config, set_)
    _prepare_data(cfg)
    with _judge_errors():
        result = run_feedback(cfg.feedback, cfg.model, cfg.execution, cfg.layout, cfg.seed, force=force,
                              console=err_console)
    summary = result.summary or {}
    if as_json:
        _print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "done"
    cost = summary.get("seconds_per_1000_judgments")
    console.print(f"feedback {state}: {result.stage_dir} ({summary.get('samples')} samples judged by "
                  f"{summary.get('judge')}, label rate {summary.get('label_rate')}, "
                  f"mean S {summary.get('mean_score')}, "
                  f"{summary.get('pairs')} pairs; {summary.get('judgments_made')} judgments made, "
                  f"{summary.get('cache_hits')} cached" + (f", {cost} s per 1000" if cost is not None else "") + ")")


@feedback_app.command("calibrate")
@friendly_errors
def feedback_calibrate_cmd(
    judge: Annotated[str | None, typer.Option(help="tools, local, openai or hybrid.")] = None,
    grounding: Annotated[bool | None, typer.Option("--grounding/--no-grounding", help="Give LLM judges the API "
                                                                                      "database row.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples of the split (0: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo even if an identical calibration finished.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """AUC of a judge on the val split: gold answers (good) against their mutants (bad), per question and
    mutant kind; writes runs/<name>/calibration/calibration-<judge>[-grounded][-exec].json."""
    from apirl.feedback.calibrate import print_calibration, run_calibration

    overrides = list(set_ or [])
    if judge is not None:
        overrides.append(f"feedback.judge={json.dumps(judge)}")
    if grounding is not None:
        overrides.append(f"feedback.grounding={str(grounding).lower()}")
    if limit is not None:
        overrides.append(f"feedback.calibrate_limit={limit}")
    cfg = _config(config, overrides)
    _prepare_data(cfg)
    with _judge_errors():
        result = run_calibration(cfg.feedback, cfg.model, cfg.execution, cfg.layout, cfg.seed, force=force,
                                 console=err_console)
    report = result.summary or {}
    if as_json:
        _print_json(report)
        return
    print_calibration(report, console)
    console.print(f"{'up to date: ' if result.skipped else 'wrote '}{result.stage_dir}")


if __name__ == "__main__":
    app()
