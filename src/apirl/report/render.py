"""What the report says (sections built from a `RunData`) and how it is written (Markdown and HTML).

The sections are plain data: paragraphs, bullet lists, tables, plots, code and collapsible groups. Both writers
walk the same sections, so report.md and report.html carry the same numbers; only HTML can show the plots, and
the Markdown says so once at the top instead of linking images it cannot hold.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from apirl.errors import InputError
from apirl.evaluate.paired import COMPARISON_HEADER, compare, comparison_row
from apirl.evaluate.tables import format_value, markdown_table
from apirl.models.config import GROUNDED
from apirl.report import plots
from apirl.report.collect import KNOWN_STAGES, RL_ALGORITHMS, RunData
from apirl.stats import wilson_interval

NOT_RUN = "not run"


# ---------------------------------------------------------------------------------------------------------------
# The document model.


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Plot:
    caption: str
    png: bytes


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str


@dataclass
class Details:
    """A group the reader opens on demand (HTML <details>); in Markdown a bold title followed by its blocks."""

    summary: str
    blocks: list[Block]


Block = str | Table | Plot | Bullets | Code | Details


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


# ---------------------------------------------------------------------------------------------------------------
# Numbers.


def number(value: Any) -> str:
    """A value from a summary file as a table cell: 4 significant digits for floats, '–' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value))
    return str(value)


def scalar_table(summary: dict[str, Any]) -> Table:
    """A summary file's plain values (numbers, strings, flat lists) as a key/value table; nested objects are
    shown elsewhere or in the raw file."""
    rows = [[key, number(value)] for key, value in summary.items()
            if not isinstance(value, dict) and not (isinstance(value, list) and any(isinstance(v, dict | list)
                                                                                     for v in value))]
    return Table(["key", "value"], rows)


# ---------------------------------------------------------------------------------------------------------------
# The sections, in reading order.

RESULT_COLUMNS = (("ast_accuracy", "AST acc"), ("hallucination", "halluc."), ("strict_accuracy", "strict acc"),
                  ("rouge_l", "ROUGE-L"), ("codebleu", "CodeBLEU"))
EXEC_COLUMNS = (("executability", "exec bound"), ("executability_api", "exec API"),
                ("executability_strict", "exec strict"))
ZERO_SHOT_MARKERS = ("0_shot", "0-shot")


def header_section(run: RunData, command: str, written_at: str, machine: str) -> Section:
    pipeline = run.pipeline or {}
    finished = sorted(m["finished_at"] for m in run.manifests.values() if m.get("finished_at"))
    if pipeline:
        # `apirl run` writes the report as its last step, before the run's finish time exists.
        ended = pipeline.get("finished_at") or "not yet when this report was written"
        when = f"started {pipeline.get('started_at') or '–'}, finished {ended}"
    elif finished:
        when = f"stages finished between {finished[0]} and {finished[-1]} (no pipeline.json)"
    else:
        when = "no finished stage"
    commits = sorted({str(m["git_commit"]) for m in run.manifests.values() if m.get("git_commit")})
    commit = pipeline.get("commit") or (", ".join(commits) if commits else "unknown")
    return Section(f"apirl report: {run.name}", [Bullets([
        f"**Run directory:** `{run.run_dir}`",
        f"**Run:** {when}",
        f"**Commit:** `{commit}`" + (" (the stages ran at different commits)" if not pipeline and len(commits) > 1
                                     else ""),
        f"**Machine:** {machine}",
        f"**Command:** `{command}`",
        f"**Report written:** {written_at}",
    ])], level=1)


def _same_ids_note(rows: list[tuple[str, dict[str, Any]]]) -> str:
    splits = {(summary.get("split"), summary["n"]) for _, summary in rows}
    if len(splits) == 1:
        split, n = next(iter(splits))
        return f"Every row scores the same split ({split or 'unknown'}, n = {n})."
    return "**The rows do not score the same questions:** " + "; ".join(
        f"{label}: split {summary.get('split')}, n = {summary['n']}" for label, summary in rows) + "."


def _headline_plot(rows: list[tuple[str, dict[str, Any]]]) -> bytes | None:
    """AST accuracy, strict accuracy and executability per model, each bar with the interval of the table."""
    values: dict[str, list[float | None]] = {}
    errors: dict[str, list[tuple[float, float] | None]] = {}
    for name, key in (("AST accuracy", "ast_accuracy"), ("strict accuracy", "strict_accuracy")):
        values[name] = [summary.get(key) for _, summary in rows]
        errors[name] = [tuple(ci) if (ci := (summary.get("ci95") or {}).get(key)) else None for _, summary in rows]
    for name, key in (("exec bound", "executability"), ("exec API", "executability_api")):
        values[name] = [summary.get(key) for _, summary in rows]
        errors[name] = [wilson_interval(rate, summary["n"]) if rate is not None else None
                        for rate, (_, summary) in zip(values[name], rows, strict=True)]
    return plots.grouped_bars([label for label, _ in rows], values, "Headline rates with 95% intervals", "rate",
                              errors=errors, ylim=(0, 1))


def results_section(run: RunData) -> Section:
    rows = run.models + run.anchors
    section = Section("Results")
    if not rows:
        section.blocks.append(f"Evaluation: {NOT_RUN} (no `eval/<label>.json` and no `eval/gorilla.json`).")
        return section
    header = ["model", "n", *(label for _, label in RESULT_COLUMNS), *(label for _, label in EXEC_COLUMNS)]
    table_rows = []
    for label, summary in rows:
        ci = summary.get("ci95") or {}
        cells = [format_value(summary.get(key), ci.get(key)) for key, _ in RESULT_COLUMNS]
        for key, _ in EXEC_COLUMNS:
            rate = summary.get(key)
            cells.append(format_value(rate, list(wilson_interval(rate, summary["n"])) if rate is not None else None))
        table_rows.append([label, str(summary["n"]), *cells])
    section.blocks.append(Table(header, table_rows))
    image = _headline_plot(rows)
    if image:
        section.blocks.append(Plot("AST accuracy, strict accuracy and executability (bound) per model", image))
    notes = [_same_ids_note(rows),
             "Percent; [95% interval]: bootstrap from the eval file where it has one (`ci95`), Wilson score "
             "interval from rate and n for executability. CodeBLEU is corpus-level and has none. exec bound: the "
             "code runs to its last line with its inputs bound; exec API: it runs so and loads a database model "
             "(the one its api_call names, or one of the gold domain), so code that avoids the API does not "
             "count; exec strict: as written. '–': not measured."]
    if not run.models:
        notes.append(f"The run's own models: {NOT_RUN} (no `eval/<label>.json`).")
    if not run.anchors:
        notes.append(f"Gorilla-7B anchors: {NOT_RUN} (no `eval/gorilla.json`).")
    notes += [f"{label}: {summary['missing_responses']} questions had no response (scored as empty)."
              for label, summary in rows if summary.get("missing_responses")]
    section.blocks.append(Bullets(notes))
    return section


def sft_label(label: str) -> str:
    """The M_SFT row a model is paired with: the grounded one for a grounded model."""
    return f"sft{GROUNDED}" if label.endswith(GROUNDED) else "sft"


def paired_section(run: RunData) -> Section:
    """Each RL model (and baseline) minus M_SFT, and each run model minus Gorilla-7B's zero-shot rows, question by
    question: the interval of a difference, which the per-model intervals of the results table overstate."""
    section = Section("Paired differences")
    labels = [label for label, _ in run.models]
    anchors = [label for label, _ in run.anchors if any(m in label for m in ZERO_SHOT_MARKERS)]
    # Each model minus M_SFT decoded the same way (`ppo-catalog` minus `sft-catalog`), and grounding's own effect.
    pairs = [(label, sft_label(label)) for label in labels if label != sft_label(label)]
    pairs += [(f"sft{GROUNDED}", "sft")]
    pairs += [(label, anchor) for anchor in anchors for label in labels]
    pairs = [(a, b) for a, b in pairs if a in run.details and b in run.details]
    if not pairs:
        section.blocks.append(f"Paired differences: {NOT_RUN} (no `eval/details/<label>.jsonl` for M_SFT or "
                              "Gorilla-7B's zero-shot rows beside another model).")
        return section
    config = ((run.pipeline or {}).get("config") or {}).get("eval") or {}
    samples, seed = int(config.get("bootstrap_samples", 1000)), int(config.get("bootstrap_seed", 0))
    mode = str(config.get("mode", "gorilla"))
    rows = []
    for label, base in pairs:
        try:
            differences = compare(run.details[base], run.details[label], mode=mode, samples=samples, seed=seed,
                                  names=(base, label))
        except InputError as exc:  # different questions: say so in the row rather than pair what is not paired
            rows.append([label, base, "–", exc.reason, *("" for _ in COMPARISON_HEADER[4:])])
            continue
        rows.append(comparison_row(label, base, differences))
    section.blocks.append(Table(COMPARISON_HEADER, rows))
    section.blocks.append(Bullets([
        "Points: the model's rate minus the other's on the same questions (AST outcomes in "
        f"{mode} mode); [paired bootstrap 95% interval, {samples} resamples of the questions, seed {seed}]; for "
        "0/1 metrics (+questions where only the model has it / -questions where only the other has it, exact "
        "McNemar p on those): for AST accuracy gains and losses, for hallucination new and removed ones.",
        "The per-model intervals of the results table overlap long before a difference is in doubt, because both "
        "models answer the same questions. With few discordant questions the bootstrap interval of a 0/1 metric is "
        "too narrow (4 gained and 0 lost: no resample is below 0); read McNemar's p there.",
        "Text metrics count the questions with reference code; exec bound and exec API only where both were run.",
    ]))
    return section


def executability_section(run: RunData) -> Section:
    section = Section("Executability failures")
    rows = [(label, s) for label, s in run.models + run.anchors if isinstance(s.get("exec_failures"), dict)]
    if not rows:
        section.blocks.append(f"Executability: {NOT_RUN} (no eval file has `exec_failures`).")
        return section
    statuses = sorted({status for _, s in rows for status in s["exec_failures"]})
    ran = [round((s.get("executability") or 0.0) * s["n"]) for _, s in rows]
    layers = {"ran to the end": [float(r) for r in ran]}
    layers.update({status: [float(s["exec_failures"].get(status, 0)) for _, s in rows] for status in statuses})
    image = plots.stacked_bars([label for label, _ in rows], layers, "Bound-mode outcome of every response",
                               "responses")
    if image:
        section.blocks.append(Plot("Executability (bound mode): responses that ran, and each failure class", image))
    section.blocks.append(Table(["model", "n", "ran", *statuses],
                                [[label, str(s["n"]), str(r), *(str(s["exec_failures"].get(st, 0)) for st in statuses)]
                                 for (label, s), r in zip(rows, ran, strict=True)]))
    section.blocks.append("'ran' is executability × n; the failure counts are the eval file's `exec_failures`.")
    return section


def per_domain_section(run: RunData) -> Section:
    """The run's models and Gorilla-7B's zero-shot anchors (the setting our models are in: no retrieval)."""
    section = Section("AST accuracy per domain")
    rows = run.models + [(label, s) for label, s in run.anchors if any(m in label for m in ZERO_SHOT_MARKERS)]
    rows = [(label, s) for label, s in rows if s.get("per_domain")]
    if not rows:
        section.blocks.append(f"Per-domain scores: {NOT_RUN} (no eval file has `per_domain`).")
        return section
    domains = sorted({domain for _, s in rows for domain in s["per_domain"]})
    values = {label: [s["per_domain"].get(d, {}).get("ast_accuracy") for d in domains] for label, s in rows}
    image = plots.horizontal_grouped_bars(domains, values, "AST accuracy")
    if image:
        section.blocks.append(Plot("AST accuracy per domain and model (Gorilla-7B: zero-shot rows)", image))
    sizes = {d: next(s["per_domain"][d].get("n") for _, s in rows if d in s["per_domain"]) for d in domains}
    table = Table(["domain", "n", *(label for label, _ in rows)],
                  [[domain, number(sizes[domain]), *(format_value(v[i]) for v in values.values())]
                   for i, domain in enumerate(domains)])
    section.blocks.append(Details("AST accuracy per domain (percent)", [table]))
    return section


def sft_section(run: RunData) -> Section:
    section = Section("Supervised fine-tuning")
    if run.sft_log is None and run.sft_summary is None:
        section.blocks.append(f"SFT: {NOT_RUN} (no `sft/log.jsonl` or `sft/summary.json`).")
        return section
    image = plots.loss_curves(run.sft_log or [], "SFT loss")
    if image:
        section.blocks.append(Plot("SFT loss against the step (sft/log.jsonl)", image))
    curve = plots.curve_panels(run.sft_log or [], "Learning curve on val (greedy, up to the call)",
                               [("Gorilla mode", ("val_ast_accuracy", "val_hallucination")),
                                ("strict mode, domain", ("val_strict_accuracy", "val_domain_accuracy"))])
    if curve:
        section.blocks.append(Plot("AST accuracy, hallucination and strict accuracy of the val answers against the "
                                   "step (sft/log.jsonl, sft/curve.jsonl)", curve))
    if run.sft_summary:
        section.blocks.append(scalar_table(run.sft_summary))
    return section


def _seconds_per_1000(report: dict[str, Any]) -> str:
    """The judge's cost; a calibration answered wholly from the judgment cache timed nothing."""
    value = report.get("seconds_per_1000_judgments")
    return f"{value:.4g}" if isinstance(value, int | float) else "– (all cached)"


def _judge_label(report: dict[str, Any]) -> str:
    value = report.get("seconds_per_1000_judgments")
    cost = f"{value:.4g} s/1000" if isinstance(value, int | float) else "cached: not timed"
    return f"{report['judge']}\n{cost}"


def feedback_section(run: RunData) -> Section:
    section = Section("AI feedback and judge calibration")
    if run.feedback_summary:
        section.blocks += ["The feedback stage (`feedback/summary.json`):", scalar_table(run.feedback_summary)]
    else:
        section.blocks.append(f"Feedback stage: {NOT_RUN} (no `feedback/summary.json`).")
    if not run.calibrations:
        section.blocks.append(f"Judge calibration: {NOT_RUN} (no `calibration/<judge>/calibration.json`).")
        return section
    judges = [c for c in run.calibrations if isinstance(c.get("auc"), int | float)]
    image = plots.bars([_judge_label(c) for c in judges], [c["auc"] for c in judges],
                       "Judge calibration: AUC of gold answers against their mutants", "AUC", ylim=(0, 1.12),
                       value_format="{:.3f}")
    if image:
        section.blocks.append(Plot("Judge calibration AUC (0.5: chance), with seconds per 1000 judgments", image))
    kinds = sorted({kind for c in run.calibrations for kind in c.get("per_kind") or {}})
    rows = [[str(c["judge"]), number(c.get("auc")),
             *(number((c.get("per_kind") or {}).get(kind, {}).get("auc")) for kind in kinds),
             _seconds_per_1000(c), number(c.get("examples")), str(c.get("split") or "–")] for c in run.calibrations]
    section.blocks.append(Table(["judge", "AUC", *(f"AUC {kind}" for kind in kinds), "s/1000 judgments", "examples",
                                 "split"], rows))
    return section


def reward_section(run: RunData) -> Section:
    section = Section("Reward model")
    summary = run.reward_summary
    if summary is None and run.reward_log is None:
        section.blocks.append(f"Reward model: {NOT_RUN} (no `reward/summary.json` or `reward/log.jsonl`).")
        return section
    if summary:
        gold = summary.get("gold_vs_mutant") or {}
        measured = [("held-out accuracy", summary.get("heldout_accuracy")),
                    ("held-out AUC", summary.get("heldout_auc")), ("gold > mutant (all)", gold.get("rate"))]
        measured += [(f"gold > {kind}", row.get("rate")) for kind, row in (gold.get("per_kind") or {}).items()]
        measured = [(label, value) for label, value in measured if isinstance(value, int | float)]
        image = plots.bars([label for label, _ in measured], [value for _, value in measured],
                           "Reward model: held-out accuracy and AUC, gold-vs-mutant rate per kind", "rate",
                           ylim=(0, 1.12), value_format="{:.3f}")
        if image:
            section.blocks.append(Plot("Reward model on held-out feedback, and how often gold code outscores its "
                                       "mutants", image))
    image = plots.loss_curves(run.reward_log or [], "Reward model loss")
    if image:
        section.blocks.append(Plot("Reward model loss against the step (reward/log.jsonl)", image))
    if summary:
        section.blocks.append(scalar_table(summary))
        gold = summary.get("gold_vs_mutant") or {}
        if gold.get("per_kind"):
            section.blocks.append(Table(["mutant kind", "pairs", "gold scores higher"],
                                        [[kind, number(row.get("pairs")), number(row.get("rate"))]
                                         for kind, row in gold["per_kind"].items()]))
    return section


def _rl_panels(algorithm: str, log: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """What to plot for each algorithm's log (PPO's own, TRL's): each reward term, KL, entropy, EOS share and
    length per step, so reward hacking and length drift show as one curve rising while another falls."""
    if algorithm == "dpo":
        return [("loss", ["loss", "eval_loss"]), ("preference accuracy", ["rewards/accuracies",
                                                                         "eval_rewards/accuracies"]),
                ("reward margin", ["rewards/margins", "eval_rewards/margins"])]
    if algorithm == "ppo":
        terms = sorted({key for row in log for key in row
                        if key.startswith("reward_") and key != "reward_with_penalties"})
        return [("reward", ["score", *terms]), ("KL (nats per sequence)", ["kl"]), ("entropy", ["entropy"]),
                ("share ending with EOS", ["ended"]), ("response length (tokens)", ["response_length"])]
    terms = sorted({key for row in log for key in row if key.startswith("rewards/") and key.endswith("/mean")})
    return [("reward", ["reward", *terms]), ("KL", ["kl"]), ("entropy", ["entropy"]),
            ("share ending with EOS", ["ended"]), ("completion length (tokens)", ["completions/mean_length"])]


def _rollouts_table(rows: list[dict[str, Any]], chars: int = 200) -> Table:
    """The top rollouts: each completion's head and tail (the code that the exec term pays for is at the end)."""
    flat = [" ".join(str(row["completion"]).split()) for row in rows]
    return Table(["step", "reward", "terms", "ended", "completion"], [
        [str(row["step"]), number(row["reward"]), ", ".join(f"{k} {number(v)}" for k, v in row["terms"].items()),
         {True: "yes", False: "no"}.get(row.get("ended"), "–"),
         text if len(text) <= 2 * chars else f"{text[:chars]} … {text[-chars:]}"]
        for row, text in zip(rows, flat, strict=True)])


def rl_sections(run: RunData) -> list[Section]:
    ran = [a for a in RL_ALGORITHMS if a in run.rl_logs or a in run.rl_summaries]
    missing = [a for a in RL_ALGORITHMS if a not in ran]
    top = Section("RL fine-tuning")
    if missing:
        top.blocks.append(f"{', '.join(missing)}: {NOT_RUN} (no `<algorithm>/log.jsonl` or `summary.json`).")
    sections = [top]
    for algorithm in ran:
        section = Section(algorithm.upper(), level=3)
        log = run.rl_logs.get(algorithm, [])
        image = plots.curve_panels(log, f"{algorithm.upper()} training curves", _rl_panels(algorithm, log))
        if image:
            section.blocks.append(Plot(f"{algorithm.upper()}: reward terms, KL, entropy, EOS share and length "
                                       "against the step" if algorithm != "dpo"
                                       else "DPO: loss, preference accuracy and margin", image))
        elif algorithm not in run.rl_logs:
            section.blocks.append(f"No `{algorithm}/log.jsonl`.")
        if algorithm in run.rl_summaries:
            section.blocks.append(scalar_table(run.rl_summaries[algorithm]))
        if run.rl_top_rollouts.get(algorithm):
            section.blocks.append(Details(f"Top-reward rollouts of the first, middle and last step "
                                          f"({algorithm}/rollouts.jsonl)",
                                          [_rollouts_table(run.rl_top_rollouts[algorithm])]))
        sections.append(section)
    return sections


def _stage_row(stage: str, manifest: dict[str, Any]) -> list[str]:
    return [stage, str(manifest.get("finished_at") or "–"), number(manifest.get("wall_time_s")),
            number(manifest.get("peak_memory_mb"))]


def cost_section(run: RunData) -> Section:
    section = Section("Wall time and peak memory")
    measured = [(stage, m) for stage, m in run.manifests.items()
                if isinstance(m.get("wall_time_s"), int | float) and isinstance(m.get("peak_memory_mb"), int | float)]
    image = plots.side_by_side_bars([stage for stage, _ in measured],
                                    ("wall time (s)", [m["wall_time_s"] for _, m in measured]),
                                    ("peak memory (MiB)", [m["peak_memory_mb"] for _, m in measured]),
                                    "Cost per stage (last run of each, from its manifest)")
    if image:
        section.blocks.append(Plot("Wall time and peak resident memory per stage", image))
    # Pipeline order, with a known stage that left no manifest in its place as "not run"; other stages after.
    top_of = {stage: stage.split("/")[0] for stage in run.manifests}
    rows = []
    for known in KNOWN_STAGES:
        rows += ([_stage_row(stage, m) for stage, m in run.manifests.items() if top_of[stage] == known]
                 or [[known, NOT_RUN, "–", "–"]])
    rows += [_stage_row(stage, m) for stage, m in run.manifests.items() if top_of[stage] not in KNOWN_STAGES]
    section.blocks.append(Table(["stage", "finished at", "wall time (s)", "peak memory (MiB)"], rows))
    steps = (run.pipeline or {}).get("stages") or []
    if steps:
        section.blocks += ["The pipeline's steps (`pipeline.json`; a skipped step was up to date):",
                           Table(["step", "status", "seconds", "detail"],
                                 [[str(s.get("name")), str(s.get("status")), number(s.get("seconds")),
                                   str(s.get("detail") or "")] for s in steps])]
    return section


def config_section(run: RunData) -> Section:
    section = Section("Config and versions")
    pipeline = run.pipeline or {}
    if pipeline.get("config"):
        section.blocks.append(Details("Run config (pipeline.json)", [Code(json.dumps(pipeline["config"], indent=2))]))
    configs = {stage: m["config"] for stage, m in run.manifests.items() if m.get("config") is not None}
    if configs:
        section.blocks.append(Details("Stage configs (each stage's manifest: what decided its result)",
                                      [Code(json.dumps(configs, indent=2))]))
    if not configs and not pipeline.get("config"):
        section.blocks.append("No config recorded: no `pipeline.json` and no stage manifest.")
    if pipeline.get("versions"):
        sources, where = [pipeline["versions"]], "pipeline.json"
    else:
        sources, where = [m.get("versions") or {} for m in run.manifests.values()], "the stage manifests"
    versions: dict[str, set[str]] = {}
    for source in sources:
        for package, version in source.items():
            versions.setdefault(package, set()).add(str(version))
    if versions:
        table = Table(["package", "version"], [[package, ", ".join(sorted(found))]
                                               for package, found in sorted(versions.items())])
        section.blocks.append(Details(f"Package versions ({where})", [table]))
    return section


def build_sections(run: RunData, *, command: str, written_at: str, machine: str) -> list[Section]:
    return [header_section(run, command, written_at, machine), results_section(run), paired_section(run),
            executability_section(run),
            per_domain_section(run), sft_section(run), feedback_section(run), reward_section(run), *rl_sections(run),
            cost_section(run), config_section(run)]


# ---------------------------------------------------------------------------------------------------------------
# Markdown.


def _md_cell(text: str) -> str:
    """A table cell: pipes escaped, one line, and `<` as an entity so that model text (`<<<code>>>`, `</s>`) is
    not read as HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    match block:
        case str():
            return block
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Table(header, rows):
            return markdown_table([_md_cell(h) for h in header], [[_md_cell(c) for c in row] for row in rows])
        case Code(text):
            return f"```json\n{text}\n```"
        case Details(summary, blocks):
            return "\n\n".join([f"**{summary}**", *(_md_block(b) for b in blocks if not isinstance(b, Plot))])
        case Plot():
            return ""
    raise TypeError(f"unknown block {block!r}")


def render_markdown(sections: list[Section]) -> str:
    parts = []
    for index, section in enumerate(sections):
        parts.append("#" * section.level + " " + section.title)
        if index == 0:
            parts.append("_Numbers only here: see report.html for the plots._")
        parts += [text for text in (_md_block(b) for b in section.blocks) if text]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# HTML: one file, styles inline, images as data: URIs, no script and no external reference of any kind.

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f6f7f9;
       margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 12px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ec; }
h3 { font-size: 17px; margin: 24px 0 8px; }
nav { font-size: 13px; margin: 8px 0 16px; }
nav a { margin-right: 12px; color: #2458b3; text-decoration: none; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 13px; }
th, td { border: 1px solid #dde1e8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
tr:nth-child(even) td { background: #fafbfc; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ec; }
figcaption { font-size: 13px; color: #5a6275; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f3f5f8; padding: 10px; overflow-x: auto; font-size: 12px; max-height: 480px; }
code { background: #f0f2f5; padding: 0 3px; border-radius: 3px; }
ul { padding-left: 22px; }
"""


def _inline(text: str) -> str:
    """Escape text for HTML, then turn its `code` and **bold** spans (the Markdown ones) into tags."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped).replace("\n", "<br>")


def _html_block(block: Block) -> str:
    match block:
        case str():
            return f"<p>{_inline(block)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>"
        case Table(header, rows):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        case Plot(caption, image):
            data = base64.b64encode(image).decode("ascii")
            return (f'<figure><img alt="{html.escape(caption, quote=True)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        case Code(text):
            return f"<pre>{html.escape(text)}</pre>"
        case Details(summary, blocks):
            return (f"<details><summary>{html.escape(summary)}</summary>"
                    + "".join(_html_block(b) for b in blocks) + "</details>")
    raise TypeError(f"unknown block {block!r}")


def render_html(sections: list[Section]) -> str:
    title = sections[0].title if sections else "apirl report"
    nav = "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections[1:]
                            if s.level == 2) + "</nav>"
    body = []
    for index, section in enumerate(sections):
        tag = f"h{section.level}"
        body.append(f'<{tag} id="{section.anchor}">{html.escape(section.title)}</{tag}>')
        if index == 0:
            body.append(nav)
        body += [_html_block(b) for b in section.blocks]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
