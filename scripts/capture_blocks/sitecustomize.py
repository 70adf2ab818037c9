# Capture hook for measurement only: dumps each node's genesis config and executed blocks.
import os

_DIR = os.environ.get("SEQNET_DUMP_DIR")
if _DIR:
    try:
        import pickle

        import sequencer_net.node.base as _base
        import sequencer_net.node.commit as _commit

        _orig_gs = _base.genesis_state
        _orig_eb = _commit.execute_block
        _path = os.path.join(_DIR, f"dump-{os.getpid()}.pkl")

        def _gs(config, store=None):
            with open(_path, "ab") as f:
                pickle.dump(("genesis", config), f)
            return _orig_gs(config, store)

        def _eb(state, block):
            result = _orig_eb(state, block)
            with open(_path, "ab") as f:
                pickle.dump(("block", block, result.state.state_root), f)
            return result

        _base.genesis_state = _gs
        _commit.execute_block = _eb
    except Exception as exc:  # pragma: no cover
        import sys

        print("dump hook failed:", exc, file=sys.stderr)
