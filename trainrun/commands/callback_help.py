"""`trainrun callbacks`: every callback a config can name, from Keras' source and plugins."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainrun import catalog
from trainrun.errors import UnknownNameError
from trainrun.registry import callback_names, plugin_entry_points


def _params(sig: catalog.Signature) -> str:
    parts = [p.name if p.required else f"{p.name}={p.default}" for p in sig.params]
    if sig.var_kwargs:
        parts.append("**kwargs")
    return ", ".join(parts) or "-"


def show_callbacks(name: str | None, out: Console) -> None:
    plugins = plugin_entry_points()
    if name is not None:
        if name in plugins:
            out.print(f"{name}  (plugin: {plugins[name].value})")
            return
        sig = catalog.signature("callback", name)
        if sig is None:
            raise UnknownNameError("callback", name, callback_names())
        out.print(f"[bold]{sig.render()}[/]", highlight=False, soft_wrap=True)
        out.print(f"  {sig.doc}")
        out.print(f"  source: {sig.module}")
        docs = catalog.param_docs("callback", name)
        given = [(p.name, "required" if p.required else f"default {p.default}") for p in sig.params]
        width = max((len(d) for _, d in given), default=0)
        for param, default in given:
            line = f"  {param:24} {default:{width}}  {docs.get(param, '')}".rstrip()
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(
        title="Callbacks (write them as `- Name: {args}` under callbacks:)", title_justify="left"
    )
    table.add_column("name", style="bold")
    table.add_column("parameters (defaults)")
    table.add_column("what it does")
    for cb in callback_names():
        if cb in plugins:
            table.add_row(cb, "-", f"plugin: {plugins[cb].value}")
            continue
        sig = catalog.signature("callback", cb)
        if sig is not None:
            table.add_row(cb, _params(sig), sig.doc)
    out.print(table)
    out.print(
        "Any keras.callbacks.Callback subclass also works by import path: my_module:MyCallback"
    )
