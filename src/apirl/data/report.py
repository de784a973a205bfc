"""Human-readable data statistics (rich tables) for `apirl data stats`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from apirl.data.splits import SPLITS


def print_stats(stats: dict[str, Any], console: Console) -> None:
    ev, db = stats["eval_records"], stats["api_database"]
    console.print(f"[bold]Data[/] {stats['data_dir']}  (scheme: {stats['scheme']})")
    console.print(f"eval file: {ev['lines']} lines, {ev['parsed']} parsed, {ev['skipped']} skipped, "
                  f"{ev['complete']} with every tag; {ev['questions']} questions")
    for reason in ev["skipped_reasons"]:
        console.print(f"  skipped {reason}", highlight=False)
    if ev["missing_tags"]:
        console.print("  missing tags: " + ", ".join(f"{k} {v}" for k, v in ev["missing_tags"].items()))
    console.print(f"API database: {db['rows']} rows, {db['domains']} domains, {db['call_does_not_parse']} calls "
                  f"that do not parse, {db['call_has_no_arguments']} calls without arguments")

    table = Table(title="Examples per split")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("complete", justify="right")
    table.add_column("provenance")
    for name in SPLITS:
        split = stats["splits"][name]
        table.add_row(name, str(split["examples"]), str(split["complete"]),
                      ", ".join(f"{k}: {v}" for k, v in split["per_provenance"].items()))
    console.print(table)
    if stats["dropped_for_leakage"]:
        console.print("dropped from training for repeating a test instruction or test gold code: "
                      + ", ".join(f"{k} {v}" for k, v in stats["dropped_for_leakage"].items()))

    domains = sorted({d for name in SPLITS for d in stats["splits"][name]["per_domain"]})
    per_domain = Table(title="Examples per gold domain")
    per_domain.add_column("domain")
    for name in SPLITS:
        per_domain.add_column(name, justify="right")
    for domain in domains:
        per_domain.add_row(domain, *(str(stats["splits"][name]["per_domain"].get(domain, 0)) for name in SPLITS))
    console.print(per_domain)
