"""JiT with Spectral Forcing trained with FSS noise (phi-PD): both frequency-domain tools at once.

The same 64x64 edges2shoes_handbags photos and JiT recipe as ``configs/jit_spectral_forcing.py``
(same config-string options: ``p4``/``p8``/``p16``, ``sf``/``sf_power``, ``cpu``, ``runlocal``;
Spectral Forcing is on by default here), with the forward noise replaced by FSS noise at training
radius ``r = Exp(0.1)`` (phi-PD paper Eq. 20). Spectral Forcing low-passes the network input only,
so the phase that the FSS noise carries below the cutoff still reaches the network; at sampling
time the edge maps' phase gives the layout (``translate_*.png``).

  python train.py --config configs/jit_sf_fss.py:p16,cpu --workdir runs/jit_sf_fss_p16
"""

from configs import jit_spectral_forcing


def get_config(arg=None):
  options = [o for o in (arg or '').split(',') if o]
  if not {'sf', 'sf_power'} & set(options):
    options.append('sf')
  config = jit_spectral_forcing.get_config(','.join(options))
  config.noise.kind = 'fss'
  config.noise.r0 = 0.0
  config.noise.rate = 0.1
  return config
