"""`python -m keras_synapse.bench ...`: see `keras_synapse.bench.cli`."""

from keras_synapse.bench.cli import main

raise SystemExit(main())
