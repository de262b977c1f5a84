"""The client's errors live with the protocol core (``wingman_gateway.protocol.errors``)."""

from wingman_gateway.protocol.errors import (
    CONNECTION_FAILED as CONNECTION_FAILED,
    CONNECTION_LOST as CONNECTION_LOST,
    LOCAL_CODES as LOCAL_CODES,
    NOT_CONNECTED as NOT_CONNECTED,
    TIMEOUT as TIMEOUT,
    TLS_ERROR as TLS_ERROR,
    ClientError as ClientError,
)
