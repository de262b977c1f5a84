"""What must always hold between the Router's connections, nodes and rooms."""

from __future__ import annotations

from wingman_gateway.router import Router


def problems(router: Router) -> list[str]:
    """Every disagreement between the maps, as readable sentences (none: all is well)."""
    found: list[str] = []
    rooms = router.rooms
    registered = list(rooms.nodes())
    all_rooms = list(rooms.rooms())
    if rooms.node_count() != len(registered):
        found.append(f"node_count {rooms.node_count()} but {len(registered)} nodes listed")
    if rooms.room_count() != len(all_rooms):
        found.append(f"room_count {rooms.room_count()} but {len(all_rooms)} rooms listed")
    names = [room.name for room in all_rooms]
    if len(set(names)) != len(names):
        found.append(f"room names not unique: {sorted(names)}")
    for node in registered:
        if node.closed or node not in router.connections:
            found.append(f"{node!r} is registered but its connection is gone")
        if rooms.node(node.node_id) is not node:  # type: ignore[arg-type]
            found.append(f"{node!r} is listed but not found by its id")
        for room_id, room in node.rooms.items():
            if room_id != room.id or rooms.find(room.id) is not room:
                found.append(f"{node!r} lists {room!r}, which is not a live room")
            if room.members.get(node.node_id) is not node:  # type: ignore[arg-type]
                found.append(f"{node!r} lists {room!r}, which does not list it")
    for room in all_rooms:
        if rooms.find(room.id) is not room or rooms.find_by_name(room.name) is not room:
            found.append(f"{room!r} is not found by its id and its name")
        if not room.members:
            found.append(f"{room!r} has no members")
        if room.recipients != tuple(room.members.values()):
            found.append(f"{room!r} fans out to {room.recipients}, not its members")
        for node_id, member in room.members.items():
            if member.node_id != node_id or rooms.node(node_id) is not member:
                found.append(f"{room!r} has a ghost member {member!r}")
            elif member.rooms.get(room.id) is not room:
                found.append(f"{room!r} has {member!r}, which does not list it")
    return found
