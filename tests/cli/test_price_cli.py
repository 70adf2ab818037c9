"""`seqnet price option` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sequencer_net.cli.main import cli
from sequencer_net.execution.fixed_point import format_decimal, parse_decimal
from sequencer_net.execution.options_pricing import OptionType, black_scholes

EXAMPLE = ["--spot", "100", "--strike", "100", "--expiry-years", "0.5", "--rate", "0.05",
           "--vol", "0.2"]  # fmt: skip
KEYS = ["price", "delta", "gamma", "vega", "theta", "rho"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["price", "option", *args])
    return result.exit_code, result.output


def test_json_output_is_the_engine_quote_as_exact_decimal_strings() -> None:
    code, output = invoke("--type", "call", *EXAMPLE, "--json")
    assert code == 0, output
    payload = json.loads(output)
    assert list(payload) == KEYS
    assert payload == {
        "price": "6.888728577680617654",
        "delta": "0.597734468908438249",
        "gamma": "0.027358658565220984",
        "vega": "27.358658565220984273",
        "theta": "-8.115967628702357215",
        "rho": "26.442359156581603602",
    }
    # The same integers the engine computes, not a re-rendering via floats.
    quote = black_scholes(
        OptionType.CALL, *(parse_decimal(x) for x in ("100", "100", "0.5", "0.05", "0.2"))
    )
    assert payload == {k: format_decimal(getattr(quote, k)) for k in KEYS}


def test_put_and_case_insensitive_type() -> None:
    code, output = invoke("--type", "PUT", *EXAMPLE, "--json")
    assert code == 0, output
    payload = json.loads(output)
    assert payload["price"] == "4.419719780513884517"
    assert payload["delta"] == "-0.402265531091561751"
    assert payload["rho"].startswith("-")


def test_human_output_lists_every_value_with_its_unit() -> None:
    code, output = invoke("--type", "call", *EXAMPLE)
    assert code == 0, output
    lines = output.splitlines()
    assert [line.split()[0] for line in lines] == KEYS
    assert lines[0].split()[1] == "6.888728577680617654"
    assert "negative = decay" in lines[4]
    assert "100 vol points" in lines[3]


def test_rate_defaults_to_zero() -> None:
    args = ["--type", "call", "--spot", "100", "--strike", "100", "--expiry-years", "1",
            "--vol", "0.2", "--json"]  # fmt: skip
    code, output = invoke(*args)
    assert code == 0, output
    _, output_zero = invoke(*args, "--rate", "0")
    assert json.loads(output) == json.loads(output_zero)
    assert json.loads(output)["rho"] != "0.000000000000000000"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--spot", "1e2"], "Invalid value for '--spot'"),
        (["--vol", "20%"], "Invalid value for '--vol'"),
        (["--strike", "0.0000000000000000001"], "at most 18"),
        (["--vol", "0"], "volatility must be positive"),
        (["--spot", "-5"], "spot must be positive, got -5"),
        (["--expiry-years", "-0.1"], "must not be negative, got -0.1"),
    ],
)
def test_bad_input_is_a_usage_error(bad: list[str], message: str) -> None:
    args = dict(zip(EXAMPLE[::2], EXAMPLE[1::2], strict=True))
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    flat = [item for pair in args.items() for item in pair]
    code, output = invoke("--type", "call", *flat)
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_missing_option_and_unknown_type_fail() -> None:
    code, output = invoke("--type", "call", "--spot", "100")
    assert code == 2 and "Missing option" in output
    code, output = invoke("--type", "straddle", *EXAMPLE)
    assert code == 2 and "'straddle' is not one of" in output


def test_help_teaches_the_units() -> None:
    code, output = invoke("--help")
    assert code == 0
    for phrase in ("0.2 = 20%", "365-day years", "negative = decay", "100 vol points",
                   "quote currency per 1 unit of underlying"):  # fmt: skip
        assert phrase in " ".join(output.split()), phrase


def test_price_command_imports_nothing_heavy() -> None:
    code = (
        "import sys; import sequencer_net.cli.price; "
        "heavy = ('web3', 'libp2p', 'trio', 'rocksdict', 'mpmath'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
