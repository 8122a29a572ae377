"""The fused CUDA path, a subsystem of its own beside the backends that use it.

- ``fused_step.cu``: the two kernels of one training step (forward pass, loss gradient and
  the four parameter gradients per tile of samples, then the fixed-order reduction and the
  update), real CUDA source compiled with -D defines for the shape;
- ``kernels.py``: the launch shape, the defines, the scope (which networks and options the
  fused step covers, and why not otherwise);
- ``fused.py``: the fused step as a plug-in beside the loop (``CupyFused``: where it
  applies, its kernels compiled per shape, its run);
- ``driver.py``: the run of many fused steps in the one loop: buffers and CUDA graphs
  kept in a workspace later runs reuse, losses to the host only on logging steps;
- ``dlpack.py``: the bridge that lets torch and jax CUDA arrays train with these kernels,
  with no copies either way (``DlpackFused``, their fused plug-in);
- ``graphs.py``, ``gemm.py`` and ``gemm.cu``: the array-API core's own epochs replayed as
  CUDA graphs (torch and cupy), and the matrix products CuPy's capture allows;
- ``profile.py``: where a step's time goes (CUDA events around each kernel), run on a GPU.

Only the backends import it (cupy, torch, jax); it imports cupy only inside the functions
that run on a GPU.
"""
