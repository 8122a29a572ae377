"""The fused CUDA path, a subsystem of its own beside the backends that use it.

- ``fused_step.cu``: the two kernels of one training step (forward pass, loss gradient and
  the four parameter gradients per tile of samples, then the fixed-order reduction and the
  update), real CUDA source compiled with -D defines for the shape;
- ``kernels.py``: the launch shape, the defines, the scope (which networks and options the
  fused step covers, and why not otherwise);
- ``driver.py``: the run of many fused steps in the one loop: buffers and CUDA graphs
  kept in a workspace later runs reuse, losses to the host only on logging steps;
- ``dlpack.py``: the bridge that lets torch and jax CUDA arrays train with these kernels,
  with no copies either way;
- ``profile.py``: where a step's time goes (CUDA events around each kernel), run on a GPU.

Only ``nnbin_backends.cupy`` (and, through the bridge, torch and jax) import it; it imports
cupy only inside the functions that run on a GPU.
"""
