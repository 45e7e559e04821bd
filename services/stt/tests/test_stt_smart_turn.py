"""Smart Turn v3.2 as the hands-free end of turn, on real human speech with a pause in it."""

from __future__ import annotations

import numpy as np
import pytest

from avatarchat.config import ConfigError
from avatarchat_stt.audio_format import TARGET_RATE
from avatarchat_stt.smart_turn import SmartTurn, default_model_path
from avatarchat_stt.vad import Endpointer, Framer, SpeechEnded, SpeechStarted
from tests import speech_corpus


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn(default_model_path())


def utterances(audio: np.ndarray, turn: SmartTurn | None) -> list[tuple[int, int]]:
    # the service's defaults: the silence rule at 600 ms, or Smart Turn asked at 300 ms
    silence_ms = 600 if turn is None else 300
    endpointer = Endpointer(0.5, silence_ms, 150, turn=turn, max_silence_ms=1500)
    spans, start = [], 0
    for frame in Framer().push(audio):
        event = endpointer.push(frame)
        if isinstance(event, SpeechStarted):
            start = event.offset_ms
        elif isinstance(event, SpeechEnded):
            spans.append((start, event.offset_ms))
    if endpointer.speaking:
        spans.append((start, endpointer.end().offset_ms))
    return spans


def test_a_missing_model_file_names_the_install_step(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"SMART_TURN_MODEL.*fetch_smart_turn"):
        SmartTurn(tmp_path / "smart-turn-v3.2-cpu.onnx")


def test_complete_and_cut_sentences_are_told_apart(smart_turn: SmartTurn) -> None:
    """Real read speech: a whole sentence, and the same sentence cut off mid-phrase."""
    rec = speech_corpus.real_speech("librivox")[2]  # "unless to be rather cold hearted and…"
    tail = speech_corpus.silence(0.2, rec.rate)
    assert smart_turn.probability(np.concatenate([rec.pcm, tail])) > 0.5
    assert smart_turn.probability(np.concatenate([rec.pcm[: rec.pcm.size // 2], tail])) < 0.5


def test_a_pause_mid_sentence_does_not_end_the_turn(smart_turn: SmartTurn) -> None:
    rec = speech_corpus.real_speech("librivox")[2]
    half = rec.pcm.size // 2
    audio = np.concatenate(
        [
            speech_corpus.silence(0.5, TARGET_RATE),
            rec.pcm[:half],
            speech_corpus.silence(1.0, TARGET_RATE),  # a speaker looking for the next words
            rec.pcm[half:],
            speech_corpus.silence(2.5, TARGET_RATE),
        ]
    )
    assert len(utterances(audio, None)) == 2  # the silence rule cuts the sentence in two
    [(start, end)] = utterances(audio, smart_turn)
    assert end - start > 0.9 * (rec.seconds + 1.0) * 1000 - 600


@pytest.mark.parametrize(("end_of_turn", "turns"), [("smart-turn", 1), ("silence", 2)])
async def test_the_service_waits_for_the_thought_with_smart_turn(
    start_stt, end_of_turn: str, turns: int
) -> None:
    rec = speech_corpus.real_speech("librivox")[2]
    half = rec.pcm.size // 2
    audio = np.concatenate(
        [
            speech_corpus.silence(0.5, TARGET_RATE),
            rec.pcm[:half],
            speech_corpus.silence(1.0, TARGET_RATE),
            rec.pcm[half:],
            speech_corpus.silence(2.0, TARGET_RATE),
        ]
    )
    client = await start_stt(end_of_turn=end_of_turn)
    events = await client.stream(client.requests("pcm", audio.tobytes(), rate=16000, vad=True))
    finals = client.finals(events)
    assert len(finals) == turns, finals
    if turns == 1:
        assert speech_corpus.word_error_rate([rec.text], finals) <= 0.25
