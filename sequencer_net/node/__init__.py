"""The validator process and its shell around the pure cores.

- `validator`: wires every component in one readable place and runs them;
- `driver`: feeds the consensus core events and carries out its actions;
- `commit`: executes and stores committed blocks, then tells the node;
- `status`: what the node reports about its chain;
- `requests`: the kinds of p2p request a validator answers.
"""
