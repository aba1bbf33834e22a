"""A Channels consumer (tests/asgi_django.rs, issue 27): every client of
/ws/room/<name>/ joins the group of that room on the channel layer; a text message
from one goes, as JSON with the sender's number, to every client in the room."""
import json

from channels.generic.websocket import AsyncWebsocketConsumer


class RoomConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = "room-" + self.scope["url_route"]["kwargs"]["name"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(
            self.group, {"type": "room.message", "text": text_data}
        )

    async def room_message(self, event):
        await self.send(text_data=json.dumps({"text": event["text"]}))
