"""r1exp's Slurm launcher, where Hydra looks for launcher plugins (the `hydra_plugins` namespace).

The logic lives in r1exp/launch/slurm_launcher.py; this package only gives Hydra the class under
a name it accepts as `_target_` in conf/hydra/launcher/slurm-*.yaml.
"""

try:
    from r1exp.launch.slurm_launcher import RecordingSlurmLauncher
except ImportError:  # no hydra-submitit-launcher (r1exp's `slurm` extra): no Slurm presets either
    RecordingSlurmLauncher = None

if RecordingSlurmLauncher is not None:
    class SlurmLauncher(RecordingSlurmLauncher):
        """hydra-submitit-launcher's SlurmLauncher that sees jobs end without Slurm accounting
        and records a job lost before it returned as FAILED."""
