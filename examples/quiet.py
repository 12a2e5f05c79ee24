"""Imported first by the scripts: Keras starts without TensorFlow's noise.

TensorFlow prints its C++ start-up lines (CUDA probes, CPU features, absl's
"All log messages before absl::InitializeLog()") while it is imported,
before any log level applies. Unless you set `TF_CPP_MIN_LOG_LEVEL`
yourself, this module sets it to 3 (errors only), imports Keras (and so the
backend) with those start-up lines held back, and shows them only if the
import fails. Set `TF_CPP_MIN_LOG_LEVEL=0` to see everything.
"""

import os
import sys
import tempfile

# A process this one starts inherits the log level set here, and a marker
# that says it was not the user's choice.
if "TF_CPP_MIN_LOG_LEVEL" in os.environ and "QUIET_TF_START" not in os.environ:
    import keras  # noqa: F401  (the user chose TensorFlow's log level)
else:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["QUIET_TF_START"] = "1"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401

            # keras.utils.set_random_seed imports TensorFlow, when it is
            # installed, whatever the backend: have that happen here.
            try:
                import tensorflow  # noqa: F401
            except ImportError:
                pass
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import logging

    # tf.function's retracing warnings and other Python-side chatter.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
