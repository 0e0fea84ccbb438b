"""Operator actions from the command line: `booking-admin` and `bookingctl` share `admin`'s commands."""
