"""The queues background work travels on, by the names both engines use."""

# Urgent broadcasts have a queue of their own, served by a worker that does nothing else, so an
# alert never waits behind a large normal broadcast (B2).
URGENT = "urgent"
DEFAULT = "default"
MAIL = "mail"
# Gate mails (登下校通知, B6) too: a worker of their own, so a large broadcast never delays them.
GATES = "gates"
QUEUES = [URGENT, DEFAULT, MAIL, GATES]
