from twisted.application.service import ServiceMaker

WingmanGateway = ServiceMaker(
    "Wingman Gateway", "wingman_gateway.tap", "Room-based message gateway for agent swarms", "wingman-gateway"
)
