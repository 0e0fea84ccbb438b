"""`python -m bookingctl` is `bookingctl`."""

from bookingctl.cli import main

main()
