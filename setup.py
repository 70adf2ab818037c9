"""The optional C extension (the state tree's rebuild); metadata is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds and the state
tree runs its Python code (`state_tree.implementation()` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sequencer_net.execution._tree_native",
            sources=["sequencer_net/execution/_tree_native.c"],
            extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
