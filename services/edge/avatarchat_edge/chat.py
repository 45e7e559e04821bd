"""A terminal client for ``/ws``: ``python -m avatarchat_edge.chat [--url ws://host:8080/ws]``.

Type a line to say it; the reply streams as it is generated. ``/interrupt`` stops a reply,
``/reset`` clears the conversation, ``/quit`` (or end of input) leaves. Errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

import aiohttp

# Error codes that mean a text frame was dropped, so no reply will come for it.
TEXT_REFUSALS = frozenset({"empty_text", "text_too_long", "rate_limited", "invalid_message"})
HELP = "commands: /interrupt  /reset  /quit  (anything else is said to the avatar)"


class Chat:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, out: TextIO, err: TextIO) -> None:
        self._ws = ws
        self._out = out
        self._err = err
        self._pending = 0  # texts sent whose reply has not ended yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._open_line = False

    async def say(self, line: str) -> bool:
        """Handles one input line; False when the user wants to leave."""
        command = line.strip()
        if not command:
            return True
        if command == "/quit":
            return False
        if command == "/help":
            self.note(HELP)
        elif command == "/interrupt":
            await self._ws.send_json({"type": "interrupt"})
        elif command == "/reset":
            await self._ws.send_json({"type": "reset"})
        else:
            self._pending += 1
            self._idle.clear()
            await self._ws.send_json({"type": "text", "text": line.rstrip("\n")})
        return True

    async def wait_idle(self, timeout_s: float) -> None:
        """Waits for the replies still streaming, so piped input gets every answer."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            self.note("gave up waiting for the reply")

    def show(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "reply.delta":
            if not self._open_line:
                self._out.write("avatar> ")
                self._open_line = True
            self._out.write(str(frame.get("text", "")))
            self._out.flush()
        elif kind in ("reply.done", "reply.interrupted"):
            if kind == "reply.interrupted":
                self._out.write(" [interrupted]" if self._open_line else "avatar> [interrupted]")
                self._open_line = True
            self._end_line()
            self._turn_ended()
        elif kind == "error":
            self._end_line()
            self.note(f"error [{frame.get('code')}]: {frame.get('message')}")
            if frame.get("turn_id") or frame.get("code") in TEXT_REFUSALS:
                self._turn_ended()
        elif kind == "reset.done":
            self.note(f"conversation cleared ({frame.get('removed', 0)} messages)")
        elif kind == "session":
            resumed = " (resumed)" if frame.get("resumed") else ""
            self.note(f"session {frame.get('session_id')}{resumed}")
        elif kind == "transcript.final" and frame.get("text"):
            self.note(f"you said: {frame['text']}")
        elif kind in ("clip.speech", "clip.ready", "clip.failed"):
            detail = frame.get("audio_url") or frame.get("video_url") or frame.get("reason")
            self.note(f"{kind} #{frame.get('seq')}: {detail}")

    def closed(self) -> None:
        self._pending = 0
        self._idle.set()

    def _turn_ended(self) -> None:
        self._pending = max(0, self._pending - 1)
        if self._pending == 0:
            self._idle.set()

    def _end_line(self) -> None:
        if self._open_line:
            self._out.write("\n")
            self._out.flush()
            self._open_line = False

    def note(self, text: str) -> None:
        self._err.write(f"-- {text}\n")
        self._err.flush()


async def _read_frames(ws: aiohttp.ClientWebSocketResponse, chat: Chat) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            chat.show(message.json())
    chat.note(f"connection closed (code {ws.close_code})")
    chat.closed()


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    ssl = not args.insecure
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(args.url, headers=headers, ssl=ssl, heartbeat=30)
        except (aiohttp.ClientError, OSError) as exc:
            print(f"cannot connect to {args.url}: {exc}", file=sys.stderr)
            return 1
        async with ws:
            chat = Chat(ws, sys.stdout, sys.stderr)
            reader_task = asyncio.create_task(_read_frames(ws, chat))
            start: dict[str, Any] = {"type": "session.start", "avatar": args.avatar}
            if args.session:
                start["session_id"] = args.session
            await ws.send_json(start)
            if sys.stdin.isatty():
                chat.note(HELP)
            lines = await _stdin_lines()
            interactive = sys.stdin.isatty()
            while not ws.closed:
                line = (await lines.readline()).decode(errors="replace")
                if not line or not await chat.say(line):
                    break
                if not interactive:  # piped input: one exchange at a time, like a person
                    await chat.wait_idle(args.wait)
            if not ws.closed:
                await chat.wait_idle(args.wait)
            await ws.close()
            await reader_task
    return 0


def main(argv: list[str] | None = None) -> int:
    port = os.environ.get("AVATARCHAT_EDGE_PORT", "8080")
    parser = argparse.ArgumentParser(description="Talk to avatarchat from a terminal.")
    parser.add_argument("--url", default=f"ws://127.0.0.1:{port}/ws", help="the edge's /ws URL")
    parser.add_argument("--token", default=os.environ.get("AVATARCHAT_TOKEN"), help="access token")
    parser.add_argument("--session", help="resume this session id")
    parser.add_argument("--avatar", action="store_true", help="also request avatar clips")
    parser.add_argument("--insecure", action="store_true", help="accept a self-signed certificate")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a reply")
    try:
        return asyncio.run(run(parser.parse_args(argv)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
