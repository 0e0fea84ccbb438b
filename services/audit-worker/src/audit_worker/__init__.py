"""The audit worker: records audit events from the `audit` queue in each tenant's hash chain."""
