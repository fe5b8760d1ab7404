"""python -m tests.okx_stand_in --port P [--rate-limit N]: the stand-in in its own process."""

from tests.okx_stand_in import main

main()
