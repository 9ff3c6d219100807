"""cli: the operator commands (mta start, config, queue, sendmail, ...)."""
