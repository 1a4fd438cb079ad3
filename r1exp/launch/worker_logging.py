"""What the worker prints: r1exp's own progress, and only the warnings of everything else.

With the root logger at INFO every hub/HTTP request (httpx, huggingface_hub, urllib3) printed
a line. Third-party loggers stay at WARNING unless R1EXP_LIBRARY_LOG_LEVEL asks for more
(e.g. `R1EXP_LIBRARY_LOG_LEVEL=INFO r1exp ...` to watch downloads).
"""

from __future__ import annotations

import logging
import os
import warnings

LIBRARY_LEVEL_ENV = "R1EXP_LIBRARY_LOG_LEVEL"


def configure(rank: int) -> None:
    library_level = os.environ.get(LIBRARY_LEVEL_ENV, "WARNING").upper()
    logging.basicConfig(
        level=library_level if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s][rank{rank}][%(name)s][%(levelname)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("r1exp").setLevel(logging.INFO if rank == 0 else logging.WARNING)
    # TRL 1.16 reads `model.is_gradient_checkpointing` each time it unwraps the model for
    # generation (trl/models/utils.py), once per GRPO step; transformers 5 deprecated that name
    # for `is_activation_checkpointing` with a FutureWarning that Python prints every time
    # (the call site is TRL's, not ours). Only this message is hidden: nothing we can act on.
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
