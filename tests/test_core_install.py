"""The core install needs only what the core imports: with every optional package hidden, the
tokenizer, model, packing rule and training loop import and run, and a stage that needs an extra
says which one to install."""

import subprocess
import sys
import textwrap

from qcoder_lib.extras import EXTRAS

OPTIONAL = sorted({name for extra, pairs in EXTRAS.items() if extra != "core" for name, _ in pairs})

PRELUDE = textwrap.dedent(f"""
    import importlib.abc, sys
    HIDDEN = {OPTIONAL!r}
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)")
            return None
    sys.meta_path.insert(0, Hide())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_core_runs_without_any_extra():
    out = _run("""
        import torch
        import qcoder_lib, qcoder_lib.io, qcoder_lib.packed
        from qcoder_lib.tokenizer import train_tokenizer, encode_data
        from qcoder_lib.model import QwenConfig, QwenForCausalLM
        from qcoder_lib.train import TrainConfig, train
        tok = train_tokenizer(["def f(x):\\n    return x + 1\\n"] * 20, 300)
        ids = torch.tensor([encode_data(tok, "def f(x): return x")])
        cfg = QwenConfig.preset("smoke", vocab_size=len(tok))
        logits = QwenForCausalLM(cfg)(ids)
        assert logits.shape == (1, ids.shape[1], cfg.vocab_size)
        loaded = [m for m in sys.modules if m.split(".")[0] in HIDDEN]
        assert not loaded, loaded
        print("core ok")
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "core ok" in out.stdout


def test_a_stage_without_its_extra_names_the_extra():
    out = _run("""
        try:
            import qcoder_lib.data.engine
        except ImportError as e:
            print("ERR", e)
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "qcoder-course[data]" in out.stdout, out.stdout
