"""The script guard: attack scripts are refused by check_script AND fail under run_script.

Each attack is checked three ways: the static check names the line and rule; the harness
(run in a subprocess, as in the container) exits with the script-refused code; and the run-time
layer alone (static check skipped) still stops it.
"""
from __future__ import annotations

import subprocess
import textwrap

import pytest

from sandbox import broker_socket
from sandbox.sdk import guard
from sandbox.sdk import _runtime
from sandbox.sdk.errors import EXIT_CODES, BrokerUnavailable, OutputRefused, SandboxError, ScriptRefused

from .sdk_helpers import PYTHON, CannedBroker, harness_env

REFUSED = EXIT_CODES[ScriptRefused]
SECRET = "/etc/passwd"

# (name, script, rule the static check must report, line)
ATTACKS = [
    ("import-os", "import os\nos.system('id')", "import-not-allowed", 1),
    ("import-subprocess-from", "from subprocess import run", "import-not-allowed", 1),
    ("dunder-import", "os = __import__('os')", "forbidden-builtin", 1),
    ("subclasses", "x = ().__class__.__bases__[0].__subclasses__()", "private-attribute", 1),
    ("getattr-globals", "def f():\n    pass\ng = getattr(f, '__globals__')", "private-attribute", 3),
    ("getattr-dynamic", "def f():\n    pass\nn = '__glo' + 'bals__'\ng = getattr(f, n)", "dynamic-attribute", 4),
    ("json-decoder", "import json\ns = json.decoder.scanner", "attribute-not-allowed", 2),
    ("statistics-random-os", "import statistics\no = statistics.random._os", "private-attribute", 2),
    ("statistics-random", "import statistics\nr = statistics.random\nr.seed(1)", "attribute-not-allowed", 2),
    ("datetime-sys", "import datetime\ns = datetime.sys", "attribute-not-allowed", 2),
    ("attrgetter-globals", "import operator\ndef f():\n    pass\ng = operator.attrgetter('__globals__')(f)",
     "private-attribute", 4),
    ("methodcaller-format", "import operator\nm = operator.methodcaller('__reduce_ex__', 2)", "private-attribute", 2),
    ("pandas-read-csv", f"import pandas as pd\ndf = pd.read_csv('{SECRET}')", "attribute-not-allowed", 2),
    ("numpy-load", f"import numpy as np\na = np.load('{SECRET}')", "attribute-not-allowed", 2),
    ("numpy-loadtxt", f"import numpy as np\na = np.loadtxt('{SECRET}')", "attribute-not-allowed", 2),
    ("from-numpy-load", "from numpy import load", "import-not-allowed", 1),
    ("numpy-lib", "import numpy as np\nt = np.lib.stride_tricks", "attribute-not-allowed", 2),
    ("numpy-ctypeslib", "import numpy as np\nc = np.ctypeslib", "attribute-not-allowed", 2),
    ("ndarray-ctypes", "import numpy as np\np = np.zeros(3).ctypes", "attribute-not-allowed", 2),
    ("ndarray-tofile", "import numpy as np\nnp.zeros(3).tofile('/tmp/x.bin')", "attribute-not-allowed", 2),
    ("to-pickle", "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.to_pickle('/tmp/x.pkl')",
     "attribute-not-allowed", 3),
    ("pandas-io", "import pandas as pd\nc = pd.io.common", "attribute-not-allowed", 2),
    ("df-query", "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.query('a > 0')",
     "attribute-not-allowed", 3),
    ("df-eval", "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.eval('a + 1')",
     "attribute-not-allowed", 3),
    ("open", f"print(open('{SECRET}').read())", "forbidden-builtin", 1),
    ("exec", "exec('import os')", "forbidden-builtin", 1),
    ("eval", "x = eval('1 + 1')", "forbidden-builtin", 1),
    ("compile", "c = compile('1', 'x', 'eval')", "forbidden-builtin", 1),
    ("globals", "g = globals()", "forbidden-builtin", 1),
    ("vars", "v = vars()", "forbidden-builtin", 1),
    ("locals", "v = locals()", "forbidden-builtin", 1),
    ("type-mro", "m = type(1).__mro__", "private-attribute", 1),
    ("gi-frame", "g = (x for x in [1])\nf = g.gi_frame.f_globals", "private-attribute", 2),
    ("gi-code", "g = (x for x in [1])\nc = g.gi_code", "private-attribute", 2),
    ("format-class", "s = '{0.__class__}'.format(1)", "private-attribute", 1),
    ("format-globals", "def f():\n    pass\ns = '{0.__globals__}'.format(f)", "private-attribute", 3),
    ("fstring-class", "x = 1\ns = f'{x.__class__}'", "private-attribute", 2),
    ("private-name", "_x = 1", "private-name", 1),
    ("relative-import", "from . import guard", "import-not-allowed", 1),
    ("sdk-internals", "from sandbox.sdk import client", "import-not-allowed", 1),
    ("sdk-submodule", "from sandbox import sdk\nw = sdk.wire", "attribute-not-allowed", 2),
    ("import-sandbox-errors", "import sandbox.errors", "import-not-allowed", 1),
    ("import-matplotlib-root", "import matplotlib", "import-not-allowed", 1),
    ("numpy-submodule-import", "import numpy.lib", "import-not-allowed", 1),
    ("breakpoint", "breakpoint()", "forbidden-builtin", 1),
    ("async", "async def f():\n    pass", "restricted", 1),
    ("syntax", "def f(:\n    pass", "syntax", 1),
]


@pytest.mark.parametrize("name, source, rule, line", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_check_script_refuses_attacks_naming_line_and_rule(name, source, rule, line):
    violations = guard.check_script(source)
    assert violations, f"{name} passed the check"
    assert any(v.rule == rule and v.line == line for v in violations), violations
    for v in violations:
        assert isinstance(v, guard.Violation) and v.message


@pytest.mark.parametrize("name, source, rule, line", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_harness_refuses_attacks(name, source, rule, line, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(source + "\nprint('ESCAPED')\n")
    out = subprocess.run([PYTHON, "-m", "sandbox.sdk.harness", str(script)], capture_output=True, text=True,
                         env=harness_env(SANDBOX_OUTPUT=str(tmp_path)), timeout=120)
    assert out.returncode == REFUSED, (out.returncode, out.stderr)
    assert "ESCAPED" not in out.stdout
    assert f"line {line} [{rule}]" in out.stderr
    assert "Traceback" not in out.stderr and "root:" not in out.stdout + out.stderr


# Attacks that compile under RestrictedPython: the run-time layer alone must stop them.
RUNTIME_ATTACKS = [
    ("import-os", "import os"),
    ("getattr-globals", "def f():\n    pass\ng = getattr(f, '__globals__')"),
    ("getattr-dynamic", "def f():\n    pass\nn = '__glo' + 'bals__'\ng = getattr(f, n)"),
    ("getattr-module-dynamic", "import numpy as np\nf = getattr(np, 'lo' + 'ad')"),
    ("json-decoder", "import json\ns = json.decoder"),
    ("statistics-random", "import statistics\nr = statistics.random"),
    ("datetime-sys", "import datetime\ns = datetime.sys"),
    ("attrgetter-globals", "import operator\ndef f():\n    pass\ng = operator.attrgetter('__globals__')(f)"),
    ("attrgetter-dynamic", "import operator\nn = '__cla' + 'ss__'\ng = operator.attrgetter(n)(1)"),
    ("methodcaller-private", "import operator\nm = operator.methodcaller('__reduce_ex__', 2)(1)"),
    ("pandas-read-csv", f"import pandas as pd\ndf = pd.read_csv('{SECRET}')"),
    ("numpy-load", f"import numpy as np\na = np.load('{SECRET}')"),
    ("from-numpy-load", "from numpy import load"),
    ("numpy-lib", "import numpy as np\nt = np.lib"),
    ("numpy-ctypeslib", "import numpy as np\nc = np.ctypeslib"),
    ("ndarray-ctypes", "import numpy as np\np = np.zeros(3).ctypes"),
    ("rng-ctypes", "import numpy as np\np = np.random.default_rng(1).bit_generator.ctypes"),
    ("to-pickle", "import pandas as pd\npd.DataFrame({'a': [1]}).to_pickle('/tmp/x.pkl')"),
    ("to-pickle-by-name", "import pandas as pd\npd.DataFrame({'a': [1]}).pipe('to_pickle')"),
    ("agg-dunder-by-name", "import pandas as pd\npd.Series([1]).agg('__reduce_ex__', 2)"),
    ("to-csv-anywhere", "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('/tmp/x.csv')"),
    ("to-csv-traversal", "import pandas as pd\nfrom sandbox import sdk\n"
                         "pd.DataFrame({'a': [1]}).to_csv(sdk.output('a.csv') + '/../../x.csv')"),
    ("savetxt-anywhere", "import numpy as np\nnp.savetxt('/tmp/x.txt', np.zeros(2))"),
    ("df-query", "import pandas as pd\npd.DataFrame({'a': [1]}).query('a > 0')"),
    ("set-plot-backend", "import pandas as pd\npd.set_option('plotting.backend', 'os')"),
    ("open", f"print(open('{SECRET}').read())"),
    ("globals", "g = globals()"),
    ("vars", "v = vars()"),
    ("compile", "c = compile('1', 'x', 'eval')"),
    ("format-class", "s = '{0.__class__}'.format(1)"),
    ("format-unbound", "s = str.format('{0.__class__}', 1)"),
    ("format-map", "s = '{x.__class__}'.format_map({'x': 1})"),
    ("format-nested-spec", "s = '{0:{1.__class__}}'.format(1, 2)"),
    ("type-three-args", "T = type('T', (), {})"),
    ("setattr-module", "import json\nsetattr(json, 'dumps', 1)"),
    ("write-module", "import math\nmath.pi = 3"),
    ("write-foreign-object", "import datetime\nd = datetime.date(2020, 1, 1)\nd.year = 3"),
    ("sdk-internals", "from sandbox import sdk\nw = sdk.wire"),
    ("dataset-internals", "from sandbox import sdk\nc = getattr(sdk.dataset('x'), 'query').__self__"),
    ("import-sandbox-errors", "import sandbox.errors"),
    ("relative-import", "from . import guard"),
    ("print-to-file", "import json\nprint('x', file=json)"),
]


@pytest.mark.parametrize("name, source", RUNTIME_ATTACKS, ids=[a[0] for a in RUNTIME_ATTACKS])
def test_runtime_layer_alone_stops_attacks(name, source, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_OUTPUT", str(tmp_path))
    with pytest.raises((SandboxError, NameError, AttributeError, TypeError, ImportError)):
        _runtime.run_source(source + "\nprint('ESCAPED')\n", "<attack>", guard.DEFAULT_ALLOWED, check=False)
    out = capsys.readouterr()
    assert "ESCAPED" not in out.out and "root:" not in out.out


def test_runtime_refusals_are_sandbox_errors_with_clear_messages(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_OUTPUT", str(tmp_path))
    with pytest.raises(ScriptRefused, match=r"`numpy.load` is not available"):
        _runtime.run_source("import numpy as np\nnp.load('x')", "<s>", guard.DEFAULT_ALLOWED, check=False)
    with pytest.raises(OutputRefused, match="sdk.output"):
        _runtime.run_source("import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('/tmp/a.csv')", "<s>",
                            guard.DEFAULT_ALLOWED, check=False)


BENIGN = textwrap.dedent('''\
    from sandbox import sdk
    import math, json, statistics
    import numpy as np
    import pandas as pd
    from collections import Counter

    farmers = sdk.dataset("farmers")
    by_county = farmers.groupby("county").agg(n=sdk.count(), income=sdk.mean("income_yuan"), epsilon=0.5)
    print(by_county)                            # a pandas DataFrame: estimates with CI columns
    by_county.to_csv(sdk.output("by_county.csv"))

    older = farmers[(sdk.col("age") >= 30) & sdk.col("crop").isin(["rice", "wheat"])]
    overall = older.agg(total=sdk.sum("subsidy_yuan"), med=sdk.median("income_yuan"), epsilon=0.25)
    by_county["share"] = by_county["n"] / by_county["n"].sum()
    by_county.loc[0, "county"] = "first"
    total = 0
    for i, row in by_county.iterrows():
        total += row["n"]
    a, (b, c) = 1, (2, 3)
    summary = {"total": total, "mean_income": statistics.mean(by_county["income"]),
               "sqrt": math.sqrt(total), "np": float(np.mean(by_county["n"].to_numpy())),
               "spent": by_county.attrs["epsilon"], "label": "{:.1f}".format(total)}
    print(json.dumps(summary, sort_keys=True))
    print(f"left: {sdk.budget('farmers')['epsilon_left']}", Counter("aab").most_common(1))
    class Note:
        def __init__(self, text):
            self.text = text
    print(Note("ok").text, pd.concat([by_county, by_county]).shape)
    print(sdk.preview(farmers.groupby("county"), n=sdk.count(), epsilon=0.5)["epsilon"])
''')


def test_benign_example_passes_the_check():
    assert guard.check_script(BENIGN) == []


@pytest.fixture
def job(short_tmp):
    handler = CannedBroker()
    out = short_tmp / "out"
    out.mkdir()
    server = broker_socket.serve(short_tmp / "broker.sock", handler, max_connections=2, idle_timeout=30)
    handler.env = harness_env(SANDBOX_SOCKET=str(short_tmp / "broker.sock"), SANDBOX_OUTPUT=str(out))
    handler.out = out
    handler.dir = short_tmp
    yield handler
    server.close()


def run_harness(job, source: str, **env: str) -> subprocess.CompletedProcess:
    script = job.dir / "script.py"
    script.write_text(source)
    return subprocess.run([PYTHON, "-m", "sandbox.sdk.harness", str(script)], capture_output=True, text=True,
                          env={**job.env, **env}, timeout=120)


def test_benign_example_runs_end_to_end_against_a_socket(job):
    out = run_harness(job, BENIGN)
    assert out.returncode == 0, out.stderr
    assert "county" in out.stdout and "income_ci_low" in out.stdout
    assert '"spent": 0.5' in out.stdout
    assert "MOCK" not in out.stderr + out.stdout
    written = (job.out / "by_county.csv").read_text()
    assert written.splitlines()[0] == ",county,n,n_ci_low,n_ci_high,income,income_ci_low,income_ci_high"
    methods = [m for m, _ in job.requests]
    assert methods == ["query", "query", "budget", "preview"]
    assert job.requests[0][1]["group_by"] == ["county"]


def test_mock_mode_is_labelled(job):
    out = run_harness(job, "from sandbox import sdk\nprint(sdk.dataset('f').agg(n=sdk.count(), epsilon=1))\n",
                      SANDBOX_MOCK="1")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("MOCK")
    assert out.stdout.startswith("[MOCK")


@pytest.mark.parametrize("source, code, needle", [
    ("from sandbox import sdk\nsdk.dataset('farmers').agg(n=sdk.count(), epsilon=9)\n", "budget_exceeded",
     "grant has 2.5 left"),
    ("from sandbox import sdk\nsdk.dataset('farmers').agg(n=sdk.count())\n", "query_invalid", "privacy budget"),
    ("from sandbox import sdk\nsdk.output('../../etc/x.csv')\n", "output_refused", "separator"),
])
def test_sdk_errors_give_one_line_and_a_distinct_exit_code(job, source, code, needle):
    out = run_harness(job, source)
    from sandbox.sdk.errors import error_from_wire, exit_code_for
    assert out.returncode == exit_code_for(error_from_wire({"code": code, "message": "m"}))
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error [{code}] (line 2)") and needle in lines[0]
    assert "Traceback" not in out.stderr


def test_unreachable_broker_exit_code(job, tmp_path):
    out = run_harness(job, "from sandbox import sdk\nsdk.budget()\n", SANDBOX_SOCKET=str(tmp_path / "none.sock"))
    assert out.returncode == EXIT_CODES[BrokerUnavailable]
    assert "could not be reached" in out.stderr


def test_other_exceptions_print_type_and_script_line_only(job):
    out = run_harness(job, "x = 1\n\ny = {'a': 1}['b']\n")
    assert out.returncode == 1
    assert out.stderr.strip() == "script error: KeyError at line 3: 'b'"


def test_system_exit_cannot_fake_an_sdk_exit_code(job):
    assert run_harness(job, "raise SystemExit(12)\n").returncode == 1
    assert run_harness(job, "raise SystemExit(0)\n").returncode == 0


def test_allowed_imports_come_from_the_environment(job):
    out = run_harness(job, "import numpy as np\n", SANDBOX_ALLOWED_IMPORTS="sandbox.sdk,math")
    assert out.returncode == REFUSED and "import-not-allowed" in out.stderr


def test_harness_usage(job):
    out = subprocess.run([PYTHON, "-m", "sandbox.sdk.harness"], capture_output=True, text=True, env=job.env)
    assert out.returncode == 2 and "usage" in out.stderr
    out = subprocess.run([PYTHON, "-m", "sandbox.sdk.harness", "/nonexistent.py"], capture_output=True, text=True,
                         env=job.env)
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_check_script_with_a_policy_allow_list():
    assert guard.check_script("import pandas as pd", allowed_imports=["sandbox.sdk"])[0].rule == "import-not-allowed"
    assert guard.check_script("from sandbox import sdk", allowed_imports=["sandbox.sdk"]) == []
    assert guard.check_script("import matplotlib.pyplot as plt\nplt.plot([1])") == []
    assert guard.check_script("import matplotlib.pyplot as plt\nplt.imread('x.png')")[0].rule == \
        "attribute-not-allowed"


def test_violation_to_dict():
    v = guard.check_script("import os")[0]
    assert v.to_dict() == {"line": 1, "rule": "import-not-allowed", "message": v.message}
    assert str(v).startswith("line 1 [import-not-allowed]: ")
