"""Command line: ``twofold compile | inspect | simulate | run | eval | demo | bench``.

Every command turns a known failure (bad model, bad input, dead peer, ...) into
one readable line on stderr and a non-zero exit; no tracebacks for user errors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from . import __version__


class UserError(click.ClickException):
    """An error caused by the user's input; printed as one line, exit status 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"twofold: error: {self.format_message()}", err=True)


class Interrupted(Exception):  # noqa: N818 - it is what happened, not a failure
    """Ctrl-C (SIGINT) during a command, carried past click to :func:`main`."""


class _Group(click.Group):
    """The top-level group: a KeyboardInterrupt leaves it as :class:`Interrupted`, because
    click turns a KeyboardInterrupt into "Aborted!" and exit status 1 before ``main`` sees it;
    ``main`` prints ``twofold: interrupted`` and exits 130 (128 + SIGINT) for every command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twofold")
def cli() -> None:
    """Compile ONNX models into two-party secure inference programs and run them."""


def _bitlength(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--bitlength must be an integer or 'auto', got {value!r}") from None


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=False), required=False)
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), help="bundle DIR")
@click.option("--bitlength", default="auto", show_default=True, help="ring bits l, or auto")
@click.option("--scale", default=12, show_default=True, help="fractional bits s")
@click.option("--calibrate", multiple=True, type=click.Path(), help="calibration input (repeat)")
@click.option("--preprocess", type=click.Choice(["chexnet", "none"]), default="chexnet")
@click.option("--input-range", nargs=2, type=float, default=None, help="declared LO HI")
@click.option("--input-shape", default=None, help="e.g. 1,3,224,224")
@click.option("--disable-pass", multiple=True, help="skip a compiler pass by name")
@click.option("--calibration-margin", default=2.0, show_default=True, help="observed × margin")
@click.option(
    "--headroom-bits",
    default=1,
    show_default=True,
    help="ReLU limits at 2^k × margin × the calibrated range (checked range model)",
)
@click.option(
    "--range-model",
    type=click.Choice(["checked", "calibrated"]),
    default="checked",
    show_default=True,
    help="checked: in-protocol overflow flags, sound ranges; calibrated: no checks",
)
@click.option(
    "--fidelity",
    type=float,
    default=None,
    help="choose the cheapest (l, s) with max |d prob| vs float <= this",
)
@click.option(
    "--holdout",
    multiple=True,
    type=click.Path(),
    help="held-out input for --fidelity (repeat; default: every 4th --calibrate)",
)
@click.option("--labels", default=None, help="output labels: A,B,C or @FILE (one a line)")
@click.option("--list-passes", is_flag=True, help="print the pass pipeline and exit")
def compile_cmd(model, out_dir, bitlength, scale, calibrate, preprocess, input_range,
                input_shape, disable_pass, calibration_margin, headroom_bits, range_model,
                fidelity, holdout, labels, list_passes) -> None:  # fmt: skip
    """Compile MODEL.onnx into a secure fixed-point bundle DIR."""
    from .compiler import describe

    if list_passes:
        click.echo(describe())
        return
    if not model or not out_dir:
        raise UserError("compile needs MODEL.onnx and -o DIR")
    from .toolchain import compile_model, parse_labels

    shape = None
    if input_shape:
        try:
            shape = [int(d) for d in input_shape.split(",")]
        except ValueError:
            raise UserError(f"--input-shape {input_shape!r} is not like 1,3,224,224") from None
    try:
        _, report = compile_model(
            model, out_dir, scale=scale, bitlength=_bitlength(bitlength), calibrate=calibrate,
            preprocess=preprocess, input_range=input_range, input_shape=shape,
            disabled=disable_pass, margin=calibration_margin, headroom_bits=headroom_bits,
            range_model=range_model, fidelity=fidelity, holdout=holdout,
            labels=parse_labels(labels) if labels else None,
        )  # fmt: skip
    except (ValueError, OSError, NotImplementedError) as e:
        raise UserError(str(e)) from None
    t = report["totals"]
    click.echo(
        f"compiled {model} -> {out_dir}: l={report['ell']} s={report['scale']}, "
        f"{t['relu_elements']:,} ReLU elements, truncations {t['truncations']}"
    )
    from .scale_choice import HE_MAX_ELL

    linear = any(lay.get("op") in ("conv2d", "gemm") for lay in report.get("layers", []))
    if report["ell"] > HE_MAX_ELL and linear:
        click.echo(
            f"note: l={report['ell']} is above the {HE_MAX_ELL} bits the HE linear layers "
            "support, so `run --linear auto` will run conv/gemm by OT (far more traffic; "
            "DenseNet-121 at 224²: ~200 GiB); a lower --scale or --fidelity keeps them on HE"
        )
    if report.get("unchecked"):
        click.echo(
            "note: this program has no ReLU to check, so it cannot flag an overflow: its ranges "
            "come from the calibration inputs alone (range model calibrated), and an input far "
            "outside them could give a wrong result unflagged; `run client` refuses it unless "
            "the client passes --allow-unchecked"
        )
    elif report.get("overflow_checked") is False:
        click.echo(
            "note: --range-model calibrated: this program cannot flag an overflow (its ranges "
            "come from the calibration inputs alone), so an input far outside them could give "
            "a wrong result unflagged; `run client` refuses it unless the client passes "
            "--allow-unchecked"
        )
    _weight_dependence_notes(report)
    onnx = report.get("onnx") or {}
    if "converted_from" in onnx:
        click.echo(
            f"note: ONNX opset {onnx['converted_from']} raised to {onnx['opset']} "
            "by onnx.version_converter"
        )
    fid = report.get("fidelity")
    if fid:
        c = fid["chosen"]
        held = c["max_dprob_holdout"]
        click.echo(
            f"--fidelity {fid['target']}: chose s={c['scale']} l={c['ell']} (est. "
            f"{c['bytes_est'] / 2**20:,.0f} MiB per inference); max |d prob| "
            f"{c['max_dprob_calibration']:.2e} on calibration, "
            + (
                f"{held:.2e} on {fid['holdout_inputs']} held-out"
                if held is not None
                else "no held-out inputs"
            )  # fmt: skip
            + f"; {len(fid['tried'])} candidates tried"
            + ("; l > 40: no HE parameters, linear layers go by OT" if c["ell"] > 40 else "")
        )


def _weight_dependence_notes(report: dict) -> None:
    """What in the client bundle depends on the weights or calibration (docs/SECURITY.md,
    "The client bundle ..."): ℓ when ``--bitlength auto`` chose it, and the public constants
    read from model initializers, which may be learned values."""
    ell = report["ell"]
    if report.get("fidelity"):
        click.echo(
            f"note: s={report['scale']} and l={ell} were chosen by --fidelity from the weights "
            "and calibration inputs, so the client bundle depends on them; compile with "
            f"--scale {report['scale']} --bitlength {ell} to make it independent of them"
        )
    elif report.get("bitlength_auto"):
        src = "the weights and calibration inputs" if report.get("calibrated") else "the weights"
        click.echo(
            f"note: l={ell} was chosen from {src} (--bitlength auto), so the client bundle "
            f"depends on them (another compile may pick another l); pass --bitlength {ell} "
            "to make it independent of them"
        )
    found = report.get("public_from_initializers") or []
    if found:
        shown = ", ".join(
            f"%{f['node']} ({f['op']}, from {', '.join(map(repr, f['initializers']))})"
            for f in found[:8]
        )
        more = f" and {len(found) - 8} more" if len(found) > 8 else ""
        click.echo(
            f"note: the client bundle holds constants read from model initializers, where "
            f"learned values live: {shown}{more}; if one is learned (a temperature, a learned "
            "clip bound), it is public: fold it into the weights or make it a per-channel "
            "vector (docs/SECURITY.md)"
        )


def _exit_if_invalid(doc: dict) -> None:
    """A flagged result (out.json has ``"valid": false``, no probabilities): one line, exit 3."""
    if doc.get("valid") is False:
        click.echo(f"twofold: error: {doc['error']}", err=True)
        sys.exit(3)


@cli.command("simulate")
@click.argument("bundle", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(), help="npy/png/jpg/dcm")
@click.option("-o", "--output", "out_path", type=click.Path(), help="out.json")
@click.option("--no-check", is_flag=True, help="do not stop at a fixed-point overflow")
def simulate_cmd(bundle, input_path, out_path, no_check) -> None:  # noqa: ANN001
    """Run a compiled BUNDLE exactly in cleartext fixed point on one input."""
    import json

    from .backends.cleartext import FixedPointOverflow
    from .toolchain import check_output_path, simulate_bundle, write_json_atomic

    try:
        if out_path:
            check_output_path(out_path, [input_path])
        doc = simulate_bundle(bundle, input_path, check=not no_check)
        if out_path:
            write_json_atomic(doc, out_path)
    except (ValueError, OSError, FixedPointOverflow) as e:
        raise UserError(str(e)) from None
    if not out_path:
        click.echo(json.dumps(doc))
    _exit_if_invalid(doc)


def connect_options(f: Callable) -> Callable:
    """The client's connection options (shared by ``run client`` and ``eval``)."""
    opts = [
        click.option("--tls-ca", type=click.Path(dir_okay=False),
                     help="CA file the server's certificate must chain to"),
        click.option("--server-fingerprint",
                     help="pin the server's certificate: the sha256:... it printed at start"),
        click.option("--token", envvar="TWOFOLD_TOKEN",
                     help="access token (or @FILE; env TWOFOLD_TOKEN)"),
        click.option("--insecure-plaintext", is_flag=True,
                     help="no TLS, server not authenticated (trusted networks only)"),
        click.option("--timeout", default=600.0, show_default=True,
                     help="seconds to wait for the peer (at most a day)"),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


@cli.group("run")
def run_group() -> None:
    """Run a compiled bundle as one party of the two-party protocol (server or client)."""


def _ot_default() -> str:
    from .runtime.session import OT_DEFAULT

    return OT_DEFAULT


@run_group.command("server")
@click.argument("bundle", type=click.Path())
@click.option("--listen", required=True, help="HOST:PORT to listen on (port 0: any free port)")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate chain")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key")
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False),
    help="where the self-signed certificate lives [default: tls/ in the server bundle]",
)
@click.option("--insecure-plaintext", is_flag=True, help="no TLS (trusted networks only)")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="accepted client tokens, one a line (mode 0600)",
)
@click.option(
    "--handshake-timeout",
    default=10.0,
    show_default=True,
    help="seconds a client has to complete TLS + token + program handshake",
)
@click.option(
    "--session-timeout",
    type=float,
    default=None,
    help="seconds a session may last [default: 600 + 2 per program step and batch image]",
)
@click.option(
    "--max-pending",
    default=16,
    show_default=True,
    help="connections in the handshake stage at once (when full, a newcomer ends the oldest "
    "of the address holding the most, if that evens them out)",
)
@click.option(
    "--max-pending-per-address",
    type=int,
    default=None,
    help="connections from one address (IPv6: one /64) in the handshake stage; more are "
    "closed [default: a quarter of --max-pending]",
)
@click.option(
    "--rate-per-address",
    type=float,
    default=1.0,
    show_default=True,
    help="connections from one address (IPv6: one /64) that may start a handshake process, "
    "a second, sustained; those whose session completes do not count; more are closed "
    "before the process is started; 0: no limit",
)
@click.option(
    "--burst-per-address",
    type=int,
    default=None,
    help="connections from one address that may start a handshake process in a burst, before "
    "--rate-per-address applies [default: twice (--max-sessions + --max-queued + "
    "--max-pending-per-address), 20]",
)
@click.option("--once", is_flag=True, help="serve one client, then exit with its status")
@click.option("--max-sessions", default=2, show_default=True, help="concurrent sessions")
@click.option(
    "--max-queued",
    default=4,
    show_default=True,
    help="clients past the handshake waiting for a session slot (more are told: busy)",
)
@click.option(
    "--queue-wait",
    default=60.0,
    show_default=True,
    help="seconds a client may wait for a session slot before it is told: busy",
)
@click.option("--linear", type=click.Choice(["he", "ot", "auto"]), default="auto")
@click.option("--ot", "ot_source", type=click.Choice(["silent", "iknp"]), default=_ot_default,
              help="correlated-OT source of ReLU etc. (default: the runtime's)")  # fmt: skip
@click.option("--no-fuse", is_flag=True,
              help="ReLU and truncation apart, 2^16-element passes (to measure)")  # fmt: skip
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait for the peer")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run_server_cmd(bundle, listen, tls_cert, tls_key, tls_dir, insecure_plaintext, token_file,
                   handshake_timeout, session_timeout, max_pending, max_pending_per_address,
                   rate_per_address, burst_per_address, once, max_sessions, max_queued,
                   queue_wait, linear, ot_source, no_fuse, timeout, quiet) -> None:  # fmt: skip
    """Serve BUNDLE (its weights stay here) to clients until stopped.

    TLS is on by default: without --tls-cert the server creates a self-signed certificate on
    first start and prints its fingerprint, which clients pin with --server-fingerprint.
    Ctrl-C stops accepting and lets running sessions finish; a second Ctrl-C ends them (exit
    status 130 either way).
    """
    from .runtime.errors import RuntimeProtocolError
    from .twoparty import server_main

    try:
        code = server_main(
            bundle, listen, tls_cert=tls_cert, tls_key=tls_key, tls_dir=tls_dir,
            insecure_plaintext=insecure_plaintext, token_file=token_file,
            handshake_timeout=handshake_timeout, session_timeout=session_timeout,
            max_pending=max_pending, max_pending_per_address=max_pending_per_address,
            rate_per_address=rate_per_address, burst_per_address=burst_per_address,
            max_queued=max_queued, queue_wait=queue_wait, once=once,
            max_sessions=max_sessions, linear=linear, ot=ot_source, fuse=not no_fuse,
            timeout=timeout, progress=not quiet,
        )  # fmt: skip
    except (RuntimeProtocolError, ValueError, OSError) as e:
        raise UserError(str(e)) from None
    sys.exit(code)


@run_group.command("client")
@click.argument("bundle", type=click.Path())
@click.option("--connect", required=True, help="server HOST:PORT")
@click.option("--input", "input_path", required=True, type=click.Path(), help="npy/png/jpg/dcm")
@click.option("-o", "--output", "out_path", type=click.Path(), help="out.json")
@connect_options
@click.option("--ot", "ot_source", type=click.Choice(["silent", "iknp"]), default=None,
              help="refuse a server that chose another OT source")  # fmt: skip
@click.option("--session-timeout", type=float, default=None,
              help="seconds the whole run may last, connecting included [default: 660 + 2 "
                   "per program step and batch image]")  # fmt: skip
@click.option("--allow-unchecked", is_flag=True,
              help="run a program that cannot flag an overflow (--range-model calibrated, no "
                   "ReLU): its result may be wrong unnoticed; out.json says so")  # fmt: skip
@click.option("--quiet", is_flag=True, help="no progress bar")
def run_client_cmd(bundle, connect, input_path, out_path, tls_ca, server_fingerprint, token,
                   insecure_plaintext, timeout, ot_source, session_timeout, allow_unchecked,
                   quiet) -> None:  # fmt: skip
    """Run BUNDLE with the server on the image INPUT; write the prediction to out.json."""
    import json

    from .runtime.errors import RuntimeProtocolError
    from .toolchain import check_output_path, write_json_atomic
    from .twoparty import client_main

    try:
        if out_path:  # before any traffic: a run's result must have somewhere to go
            check_output_path(out_path, [input_path])
        doc = client_main(
            bundle, connect, input_path, tls_ca=tls_ca, server_fingerprint=server_fingerprint,
            token=token, insecure_plaintext=insecure_plaintext, timeout=timeout,
            progress=not quiet, table_to_stderr=not out_path, ot=ot_source,
            session_timeout=session_timeout, allow_unchecked=allow_unchecked,
        )  # fmt: skip
        if out_path:
            write_json_atomic(doc, out_path)
    except (RuntimeProtocolError, ValueError, OSError) as e:
        raise UserError(str(e)) from None
    if not out_path:
        click.echo(json.dumps(doc))
    if doc.get("overflow_checked") is False:
        click.echo(
            "twofold: warning: UNCHECKED result: this program cannot flag an overflow, so a "
            "wrong probability would look like a right one (--allow-unchecked; out.json: "
            '"overflow_checked": false)',
            err=True,
        )
    _exit_if_invalid(doc)


@cli.command("eval")
@click.argument("bundle", type=click.Path())
@click.option("--model", required=True, type=click.Path(), help="the original ONNX model")
@click.option("--dataset", required=True, type=click.Path(), help="labels CSV")
@click.option("--format", "fmt", type=click.Choice(["chexpert", "nih", "plain"]), default="plain",
              show_default=True, help="CSV layout")  # fmt: skip
@click.option("--images", required=True, type=click.Path(), help="image root of the CSV paths")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="output directory")
@click.option("--mode", type=click.Choice(["simulate", "2pc"]), default="simulate",
              show_default=True)  # fmt: skip
@click.option(
    "--connect",
    multiple=True,
    help="vendor HOST:PORT for --mode 2pc; several: A:1,B:2, repeat, or @FILE",
)
@click.option(
    "--jobs", type=int, default=None, help="images in parallel [local: 1; ray: the cluster's CPUs]"
)
# --- execution engine (twofold/eval/execute.py) ---
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local threads, or one Ray task per image",
)
@click.option("--ray-address", default=None, help="join this Ray cluster (default: start one)")
@click.option(
    "--per-endpoint",
    default=2,
    show_default=True,
    help="concurrent sessions per vendor endpoint (its --max-sessions)",
)
@click.option(
    "--retries",
    default=3,
    show_default=True,
    help="retries of an image after a connection failure (never after others)",
)
@click.option("--resume", is_flag=True, help="continue the run in OUT (keeps finished images)")
@click.option("--margin", default=0.01, show_default=True,
              help="margin δ on each output (TOST and limits of agreement)")  # fmt: skip
@click.option("--auroc-margin", type=float, help="AUROC equivalence margin (TOST on ΔAUROC)")
@click.option("--group-column", help="CSV column to report per group as well as pooled, e.g. site")
@click.option("--retry-failed", is_flag=True,
              help="with --resume: run failed images (unusable, secure failure) again")  # fmt: skip
@click.option("--uncertain", type=click.Choice(["zeros", "ones", "ignore"]), default="zeros",
              show_default=True, help="CheXpert -1 labels")  # fmt: skip
@click.option("--labels", help="model output names A,B,... (default: bundle's, or CheXNet 14)")
@click.option("--label-map", multiple=True, help="DATASET_LABEL=MODEL_LABEL (repeatable)")
@click.option("--limit", type=int, help="run at most this many new images, then report")
@click.option("--title", default="twofold eval: secure vs plaintext", help="report title")
@click.option("--note", default="", help="a note shown at the top of the report")
@click.option("--quiet", is_flag=True, help="no per-image progress on stderr")
@click.option("--batch", type=int, help="images per secure run (a bundle compiled with "
              "--input-shape N,...; default: the bundle's batch)")  # fmt: skip
@click.option("--allow-unchecked", is_flag=True,
              help="evaluate a program that cannot flag an overflow (--range-model calibrated, "
                   "no ReLU): a wrong output counts as a result; the report says so")  # fmt: skip
@connect_options
def eval_cmd(bundle, model, dataset, fmt, images, out_dir, mode, connect, jobs, engine,
             ray_address, per_endpoint, retries, resume, margin, auroc_margin, group_column,
             retry_failed, uncertain, labels, label_map, limit, title, note, quiet, batch,
             allow_unchecked, tls_ca, server_fingerprint, token, insecure_plaintext,
             timeout) -> None:  # fmt: skip
    """Evaluate BUNDLE against its ONNX model on a labelled dataset; write the report to OUT."""
    from pathlib import Path

    from .eval.labels import parse_label_map
    from .eval.runner import EvalConfig, EvalError, run_eval
    from .runtime.runner import TIMEOUT_MAX, RunError, check_seconds
    from .twoparty import read_token

    if retry_failed and not resume:
        raise UserError("--retry-failed goes with --resume (it reruns failed images of a run)")
    try:  # at start, not once per image after each one's connection: as `run client` does
        check_seconds(timeout, "--timeout", TIMEOUT_MAX)
    except RunError as e:
        raise UserError(str(e)) from None
    ctx = click.get_current_context()
    sources = {}  # where each option's value came from, for the report's provenance
    ps = click.core.ParameterSource
    for name in ctx.params:
        src = ctx.get_parameter_source(name)
        if src == ps.COMMANDLINE:
            sources[name] = "command line"
        elif src in (ps.DEFAULT, ps.DEFAULT_MAP):
            sources[name] = "default"
        else:
            sources[name] = src.name.lower()
    try:
        conn = {"tls_ca": tls_ca, "server_fingerprint": server_fingerprint,
                "token": read_token(token), "insecure_plaintext": insecure_plaintext,
                "timeout": timeout}  # fmt: skip
        cfg = EvalConfig(
            bundle=Path(bundle), model=Path(model), dataset=Path(dataset), fmt=fmt,
            images=Path(images), out=Path(out_dir), mode=mode, connect=list(connect) or None,
            jobs=jobs, resume=resume, margin=margin, auroc_margin=auroc_margin,
            group_column=group_column, retry_failed=retry_failed, uncertain=uncertain,
            label_map=parse_label_map(label_map),
            labels=[s.strip() for s in labels.split(",")] if labels else None, limit=limit,
            title=title, note=note, engine=engine, ray_address=ray_address,
            per_endpoint=per_endpoint, retries=retries, batch=batch,
            allow_unchecked=allow_unchecked,
            connect_options={k: v for k, v in conn.items() if v is not None and v is not False},
            command=["twofold", *sys.argv[1:]], option_sources=sources,
        )  # fmt: skip
        s = run_eval(cfg, None if quiet else lambda m: click.echo(m, err=True))
    except (EvalError, ValueError, OSError) as e:
        raise UserError(str(e)) from None
    d, f = s["dataset"], s["secure_failures"]
    click.echo(
        (f"SECURE FAILURES: {f['failed']} of {f['attempted']} images; " if f["failed"] else "")
        + f"{d['evaluated']} images evaluated, {len(d['bad_rows'])} bad rows, "
        f"{d['pending']} pending; report: {Path(out_dir) / 'report.md'}"
    )


@cli.command("inspect")
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--input-shape", default=None, help="e.g. 1,3,224,224")
def inspect_cmd(model, fmt, input_shape) -> None:  # noqa: ANN001
    """Print the IR of MODEL.onnx and its summary (ops, params, MACs, ReLU count).

    MODEL may also be a compiled bundle: DIR or DIR/server shows the secure IR with types,
    ranges and bits, ReLU elements and truncations of each kind (``--format json``: its
    report.json); DIR/client shows the public IR the client runs (no ranges).
    """
    from pathlib import Path

    from .inspect import inspect_model, parse_shape

    if Path(model).is_dir():
        from .toolchain import inspect_bundle

        try:
            text = inspect_bundle(model, fmt)
        except (ValueError, OSError) as e:
            raise UserError(str(e)) from None
        click.echo(text)
        return
    try:
        shape = parse_shape(input_shape) if input_shape else None
        click.echo(inspect_model(model, fmt, shape))
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None


def _ignore_sigint() -> None:
    """Ignore further Ctrl-C while exiting (only the main thread may set a handler)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    """The ``twofold`` program: a known failure is one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="twofold", standalone_mode=True)
    except (KeyboardInterrupt, Interrupted):
        if argv is None:  # the program itself (not a caller's test): exiting now, so a
            _ignore_sigint()  # second Ctrl-C must not end in a traceback
        click.echo("twofold: interrupted", err=True)
        sys.exit(130)
    except OverflowError as e:  # a number too large for where it goes (options are checked)
        click.echo(f"twofold: error: a number is too large: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
