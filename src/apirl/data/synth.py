"""Training requests synthesized from API database rows, for when Gorilla's training file is absent.

Gorilla's own training set (about ten instructions per API, about 8k examples) was written by a larger model
from the same 936 rows. Offline, apirl writes `per_api` distinct requests per row from parts that a seeded
generator combines: who asks (a setting: a startup, a hospital, a teacher...), what they want done (a goal
phrase written for the row's domain), how they ask (a request form), and what the row itself says (its
functionality, description and training data, with the model's name replaced). The request never names the
model id: the model must learn which API fits which request. The answer is Gorilla's tagged format with the
row's call and its example code (prefixed with the import and the call when the example leaves them out).
Every example is marked `synthetic-apidb` so it can be filtered or weighed differently.
"""

from __future__ import annotations

import random
import re
from typing import Any

from apirl.data.apidb import ApiRow, as_text
from apirl.data.prompts import TaggedOutput

# What a user wants done, per database domain: verb phrases that fit "We need to ...".
DOMAIN_GOALS: dict[str, tuple[str, ...]] = {
    "Audio Audio Classification": ("classify short audio clips into categories", "recognize what kind of sound "
                                   "or speech is in a recording", "tag audio files by their content"),
    "Audio Audio-to-Audio": ("clean up or transform recorded audio", "separate the voices mixed in a recording",
                             "turn one audio signal into an enhanced or converted one"),
    "Audio Automatic Speech Recognition": ("transcribe spoken audio into text", "convert recorded speech to "
                                           "written text", "get a transcript of voice recordings"),
    "Audio Classification": ("classify audio recordings", "identify properties of speech such as its language"),
    "Audio Text-to-Speech": ("turn written text into natural-sounding speech", "read text aloud with a "
                             "synthetic voice", "generate spoken audio from text"),
    "Audio Voice Activity Detection": ("detect when someone is speaking in a recording", "find the segments of "
                                       "an audio file that contain speech", "tell speech apart from silence and noise"),
    "Computer Vision Depth Estimation": ("estimate how far objects are from the camera in a photo", "compute a "
                                         "depth map from a single image", "measure depth in camera frames"),
    "Computer Vision Image Classification": ("classify images into categories", "recognize what an image shows",
                                             "label photos by their main subject"),
    "Computer Vision Image Segmentation": ("segment images into regions", "find the pixels that belong to each "
                                           "object or class in an image", "produce a segmentation mask of a photo"),
    "Computer Vision Image-to-Image": ("transform an input image into a new image", "edit or restyle pictures "
                                       "under some condition", "generate an image guided by another image"),
    "Computer Vision Object Detection": ("detect and locate objects in images", "draw bounding boxes around "
                                         "the objects in a picture", "find where specific items appear in photos"),
    "Computer Vision Unconditional Image Generation": ("generate new images from scratch", "create synthetic "
                                                       "pictures without any input", "sample novel images"),
    "Computer Vision Video Classification": ("classify video clips", "recognize the action happening in a video",
                                             "categorize videos by their content"),
    "Computer Vision Zero-Shot Image Classification": ("classify images into categories it was never trained on",
                                                       "match images against a list of text labels",
                                                       "sort pictures using free-form class names"),
    "Multimodal Document Question Answer": ("answer questions about scanned documents", "extract answers from "
                                            "document images such as invoices or forms", "query the content of "
                                            "a document page"),
    "Multimodal Document Question Answering": ("answer questions about document images", "read answers out of "
                                               "scanned pages"),
    "Multimodal Feature Extraction": ("extract feature embeddings from multimodal inputs", "compute "
                                      "representations of images, audio or text for downstream use"),
    "Multimodal Graph Machine Learning": ("make predictions on graph-structured data", "learn from molecules "
                                          "or other graphs"),
    "Multimodal Image-to-Text": ("describe images in words", "generate captions for pictures", "turn an image "
                                 "into text"),
    "Multimodal Text-to-Image": ("generate images from a text description", "create pictures from written "
                                 "prompts", "illustrate an idea described in words"),
    "Multimodal Text-to-Video": ("generate a short video from a text description", "create video clips from "
                                 "written prompts"),
    "Multimodal Visual Question Answering": ("answer questions about the content of images", "let users ask "
                                             "questions about a picture", "reply to questions about a photo"),
    "Multimodal Zero-Shot Image Classification": ("classify images against free-form text labels",
                                                  "match pictures to text descriptions"),
    "Natural Language Processing Conversational": ("build a chatbot that holds a conversation", "reply to "
                                                   "users in a dialogue", "generate conversational responses"),
    "Natural Language Processing Feature Extraction": ("turn text into feature vectors", "extract contextual "
                                                       "embeddings of sentences or documents"),
    "Natural Language Processing Fill-Mask": ("fill in a missing word in a sentence", "predict the masked "
                                              "token of a text", "complete sentences with a blank in them"),
    "Natural Language Processing Question Answering": ("answer questions from a given passage", "extract the "
                                                       "answer to a question from a context text",
                                                       "find answers in documents"),
    "Natural Language Processing Sentence Similarity": ("measure how similar two sentences are", "embed "
                                                        "sentences to compare their meaning", "find "
                                                        "semantically related texts"),
    "Natural Language Processing Summarization": ("summarize long texts", "condense articles into short "
                                                  "summaries", "produce a brief summary of a document"),
    "Natural Language Processing Table Question Answering": ("answer questions about a table of data",
                                                             "query tabular data in plain language",
                                                             "look up answers in a spreadsheet-like table"),
    "Natural Language Processing Text Classification": ("classify texts into categories", "detect the "
                                                        "sentiment or topic of a text", "label messages by "
                                                        "their content"),
    "Natural Language Processing Text Generation": ("generate text from a prompt", "write text continuations",
                                                    "produce new text automatically"),
    "Natural Language Processing Text2Text Generation": ("rewrite, translate or transform input text into "
                                                         "output text", "generate a text answer from a text "
                                                         "input", "turn one piece of text into another"),
    "Natural Language Processing Token Classification": ("tag the words of a text", "extract named entities "
                                                         "such as people, places and organizations",
                                                         "label each token of a sentence"),
    "Natural Language Processing Translation": ("translate text from one language into another", "convert "
                                                "documents into another language", "offer automatic "
                                                "translation"),
    "Natural Language Processing Zero-Shot Classification": ("classify texts into labels chosen at run time",
                                                             "sort texts into categories without training "
                                                             "data", "assign arbitrary candidate labels to a text"),
    "Reinforcement Learning": ("train an agent that plays a game or controls an environment", "use a "
                               "pre-trained agent to act in a simulated environment"),
    "Reinforcement Learning Robotics": ("control a robot with a learned policy", "give a robot pre-trained "
                                        "skills"),
    "Tabular Tabular Classification": ("classify rows of tabular data", "predict a category from a table of "
                                       "features", "make a classification from structured records"),
    "Tabular Tabular Regression": ("predict a numeric value from tabular data", "estimate a quantity from a "
                                   "table of features", "run a regression on structured records"),
}

# Who is asking; each fits "<setting> wants to ..." and "As <lowercase>, ...".
SETTINGS = (
    "Our startup", "A small online store", "Our marketing team", "A hospital's research group", "My company",
    "A news website", "Our mobile app team", "A university lab", "A customer support team", "An e-learning "
    "platform", "A real estate agency", "A game studio", "Our data science team", "A museum", "A logistics "
    "company", "A travel agency", "A local library", "An insurance company", "A farming cooperative",
    "A smart home company", "A social media platform", "A law firm", "Our finance department", "A nonprofit",
    "A robotics club", "A podcast producer", "A video streaming service", "A city council", "A high school "
    "teacher", "A freelance developer", "A researcher", "A car manufacturer", "A restaurant chain",
    "A fitness app", "A security company", "A publishing house",
)

FORMS = (
    "{setting} wants to {goal}. {detail}",
    "{setting} needs a way to {goal}. {detail} How can this be done?",
    "We are {setting_lower_as} and we need to {goal}. {detail}",
    "I want to {goal}. {detail} Which model should I use, and how?",
    "Help me {goal}. {detail}",
    "{setting} is building a tool to {goal}. {detail} Show how to load a suitable model.",
    "Is there a pre-trained model to {goal}? {detail}",
    "Write code that can {goal}. {detail}",
    "As {setting_lower_as}, I have to {goal}. {detail}",
    "We have a project where we must {goal}. {detail} Recommend an API and show the code.",
)

_GENERIC_FUNCTIONALITY = {"transformers", "diffusers", "asteroid", "sentence transformers", "pytorch",
                          "speechbrain", "fairseq", "keras", "stable-baselines3", "ml-agents"}
# Sentences about where a model comes from, not what it does: no user asks for them.
_ABOUT_THE_PAPER = re.compile(r"\b(paper|introduced|released|repository|et al|disclaimer|authors?|github|"
                              r"model card|arxiv)\b", re.IGNORECASE)
_TRANSFORMERS_HEAD_RE = re.compile(
    r"^(pipeline|Auto\w+|\w+(For\w+|Model|Tokenizer\w*|Processor|FeatureExtractor|ImageProcessor|Config))$")
_KNOWN_IMPORTS = {
    "SentenceTransformer": "from sentence_transformers import SentenceTransformer",
    "StableDiffusionPipeline": "from diffusers import StableDiffusionPipeline",
    "DiffusionPipeline": "from diffusers import DiffusionPipeline",
    "DDPMPipeline": "from diffusers import DDPMPipeline",
    "load_from_hub": "from rl_zoo3 import load_from_hub",
    "hf_hub_download": "from huggingface_hub import hf_hub_download",
}


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def _first_sentences(text: str, limit: int = 2) -> str:
    return " ".join(_sentences(text)[:limit]).strip()


def _model_names(row: ApiRow) -> list[str]:
    """The names by which a description may refer to the row's model: the full id first (replacing its short
    name first would leave "org/the model"), then the last path segment unless it is a plain word ("video" of
    `duncan93/video` is in every request for that task)."""
    short = row.api_name.split("/")[-1]
    plain_word = short.isalpha() and short[1:].islower() and len(short) < 10
    return list(dict.fromkeys((row.api_name, *(() if plain_word else (short,)))))


def _without_names(text: str, row: ApiRow) -> str:
    for name in _model_names(row):
        if len(name) >= 3:
            text = re.sub(re.escape(name), "the model", text, flags=re.IGNORECASE)
    return text


def _with_article(setting: str) -> str:
    """'Our startup' -> 'a startup', 'A museum' -> 'a museum', for "We are ..." and "As ...": lower-cases the
    first word only."""
    first, _, rest = setting.partition(" ")
    if first in ("Our", "My"):
        return ("an " if rest[:1].lower() in "aeiou" else "a ") + rest
    return first.lower() + " " + rest


def _dataset_of(row: ApiRow) -> str:
    performance: Any = row.performance
    dataset = performance.get("dataset") if isinstance(performance, dict) else None
    text = as_text(dataset).strip() if dataset else ""
    return text if 0 < len(text) <= 60 and "\n" not in text else ""


def _details(row: ApiRow) -> list[str]:
    """Model-specific sentences the request may carry (never the model's name)."""
    details = [""]
    functionality = (row.functionality or "").strip().rstrip(".")
    if functionality and functionality.lower() not in _GENERIC_FUNCTIONALITY \
            and functionality.lower() not in row.domain.lower():
        details.append(f"It is a {functionality.lower()} task.")
    dataset = _dataset_of(row)
    if dataset:
        details.append(f"A model trained on {dataset} would suit us.")
    for sentence in _sentences(as_text(row.description))[:3]:
        text = _without_names(sentence, row)
        text = "The" + text[3:] if text.startswith("the model") else text
        # A sentence that starts in lower case is a fragment ("et al. and first released in ...").
        if 30 <= len(text) <= 220 and text[0].isupper() and not _ABOUT_THE_PAPER.search(text):
            details.append(text)
    arguments = as_text(row.api_arguments).strip()
    if arguments and len(arguments) <= 80 and "\n" not in arguments:
        details.append(f"Our inputs are: {arguments}.")
    return details


def synthesize_instructions(row: ApiRow, count: int, seed: int = 0, taken: set[str] | frozenset[str] = frozenset()
                            ) -> list[str]:
    """`count` distinct requests for the task of `row`, none of them in `taken` (the requests already written
    for other rows), fewer if the parts cannot make that many; the same arguments always give the same list."""
    rng = random.Random(f"apirl-synth:{seed}:{row.index}:{row.api_name}")
    goals = DOMAIN_GOALS.get(row.domain) or (f"solve a {row.domain.lower()} problem",)
    details = _details(row)
    requests: list[str] = []
    for _attempt in range(count * 20):
        if len(requests) == count:
            break
        setting = rng.choice(SETTINGS)
        text = rng.choice(FORMS).format(setting=setting, setting_lower_as=_with_article(setting),
                                        goal=rng.choice(goals), detail=rng.choice(details))
        text = " ".join(text.split())
        if text not in requests and text not in taken and not _names_model(text, row):
            requests.append(text)
    return requests


def _names_model(text: str, row: ApiRow) -> bool:
    lowered = text.lower()
    return any(len(name) >= 3 and name.lower() in lowered for name in _model_names(row))


def _import_for(call: str) -> str | None:
    head = call.split("(", 1)[0].strip()
    name = head.split(".", 1)[0]
    if name in _KNOWN_IMPORTS:
        return _KNOWN_IMPORTS[name]
    if _TRANSFORMERS_HEAD_RE.match(name):
        return f"from transformers import {name}"
    return None


def synthesize_code(row: ApiRow, *, use_example: bool = True) -> str:
    """The row's example code when it has usable code, with the import and the call put first when the example
    does not make the call itself (many examples start from an already loaded `model` or pipeline); else (or
    with `use_example` False) an import plus the row's call."""
    example = as_text(row.example_code).strip() if use_example else ""
    head = row.api_call.split("(", 1)[0].strip()
    setup = [line for line in (_import_for(row.api_call),) if line]
    if example and ("(" in example or "import" in example):
        if head and head.split(".")[-1] in example:
            return example
        called = re.match(r"(\w+)\s*\(", example)
        variable = called.group(1) if called and called.group(1) not in ("print", "import") else "model"
        setup = [line for line in setup if line not in example]
        return "\n".join([*setup, f"{variable} = {row.api_call}", example])
    return "\n".join([*setup, f"model = {row.api_call}"])


# A `compact` answer keeps the row's example code only up to this length (else the code is the import and the
# call): a third of the database's examples are longer, and they cost tokens that teach the format, not the API.
COMPACT_CODE_CHARS = 300


def synthesize_output(row: ApiRow, *, use_example: bool = True, style: str = "full") -> TaggedOutput:
    """The tagged answer for a row. `full`: a three-step explanation with two sentences of the description and
    the example code; `compact`: one step and one sentence, and the example code only when it is short; `call`:
    one step, and the import and the call as the code (the tokens that carry the API)."""
    head = row.api_call.split("(", 1)[0]
    if style == "call":
        explanation = f"Load the pre-trained model '{row.api_name}' with {head}."
        code = synthesize_code(row, use_example=False)
    elif style == "compact":
        sentence = _first_sentences(as_text(row.description), limit=1)[:200]
        explanation = f"Load the pre-trained model '{row.api_name}' with {head}. {sentence}".strip()
        code = synthesize_code(row, use_example=use_example)
        if len(code) > COMPACT_CODE_CHARS:
            code = synthesize_code(row, use_example=False)
    else:
        description = _first_sentences(as_text(row.description), limit=2) or f"A model for {row.functionality}."
        explanation = (f"1. Import the needed classes. 2. Load the pre-trained model '{row.api_name}' with "
                       f"{head}. 3. {description}")
        code = synthesize_code(row, use_example=use_example)
    return TaggedOutput(domain=row.domain, api_call=row.api_call, api_provider=row.framework,
                        explanation=explanation, code=code)
