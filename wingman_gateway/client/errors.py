"""The client's errors live with the protocol core (``wingman_gateway.protocol.errors``)."""

from wingman_gateway.protocol.errors import (  # noqa: F401
    CONNECTION_FAILED,
    CONNECTION_LOST,
    LOCAL_CODES,
    NOT_CONNECTED,
    TIMEOUT,
    TLS_ERROR,
    ClientError,
)
