"""Speech in several languages, spoken by espeak-ng: for the multilingual model's tests and
benchmark (``benchmarks/languages.py``). Nothing is downloaded.

The same six everyday sentences in each language, so the languages are compared on the same
content. espeak-ng's voices differ a lot in how natural they sound: Whisper base recognises
its English, German and Spanish every time, its Italian and Polish most times, its French
about half the time, its Portuguese, Dutch and Russian hardly ever (``benchmarks/README.md``),
so those three are :data:`HARD_LANGUAGES`, measured and reported apart.
"""

from __future__ import annotations

import numpy as np

from devtools.speech import synthesize

#: espeak-ng's voice for each language code.
VOICES: dict[str, str] = {
    "en": "en-gb-x-rp",
    "fr": "fr-fr",
    "de": "de",
    "es": "es",
    "it": "it",
    "pl": "pl",
    "pt": "pt",
    "nl": "nl",
    "ru": "ru",
}

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hello, my name is John and I live in London.",
        "The weather is lovely today, so we are going to the park.",
        "Could I have a cup of coffee and a piece of cake, please?",
        "The train to the city leaves at eight o'clock every morning.",
        "My sister is a doctor and she works at the hospital.",
        "We are going to the cinema tonight with our friends.",
    ),
    "fr": (
        "Bonjour, je m'appelle Pierre et j'habite à Paris.",
        "Il fait très beau aujourd'hui, nous allons au parc.",
        "Je voudrais un café et un morceau de gâteau, s'il vous plaît.",
        "Le train pour la ville part à huit heures tous les matins.",
        "Ma sœur est médecin et elle travaille à l'hôpital.",
        "Nous allons au cinéma ce soir avec nos amis.",
    ),
    "de": (
        "Guten Tag, ich heiße Anna und wohne in Berlin.",
        "Das Wetter ist heute sehr schön, wir gehen in den Park.",
        "Ich möchte bitte eine Tasse Kaffee und ein Stück Kuchen.",
        "Der Zug in die Stadt fährt jeden Morgen um acht Uhr ab.",
        "Meine Schwester ist Ärztin und arbeitet im Krankenhaus.",
        "Wir gehen heute Abend mit unseren Freunden ins Kino.",
    ),
    "es": (
        "Hola, me llamo Carlos y vivo en Madrid.",
        "Hoy hace muy buen tiempo, vamos al parque.",
        "Quisiera un café y un trozo de pastel, por favor.",
        "El tren a la ciudad sale a las ocho todas las mañanas.",
        "Mi hermana es médica y trabaja en el hospital.",
        "Esta noche vamos al cine con nuestros amigos.",
    ),
    "it": (
        "Ciao, mi chiamo Marco e abito a Roma.",
        "Oggi il tempo è molto bello, andiamo al parco.",
        "Vorrei un caffè e una fetta di torta, per favore.",
        "Il treno per la città parte alle otto ogni mattina.",
        "Mia sorella è medico e lavora in ospedale.",
        "Stasera andiamo al cinema con i nostri amici.",
    ),
    "pl": (
        "Dzień dobry, nazywam się Anna i mieszkam w Warszawie.",
        "Dzisiaj jest bardzo ładna pogoda, idziemy do parku.",
        "Poproszę filiżankę kawy i kawałek ciasta.",
        "Pociąg do miasta odjeżdża codziennie o ósmej rano.",
        "Moja siostra jest lekarką i pracuje w szpitalu.",
        "Dziś wieczorem idziemy z przyjaciółmi do kina.",
    ),
    "pt": (
        "Olá, meu nome é João e moro em Lisboa.",
        "Hoje o tempo está muito bonito, vamos ao parque.",
        "Eu queria um café e uma fatia de bolo, por favor.",
        "O comboio para a cidade parte às oito horas todas as manhãs.",
        "A minha irmã é médica e trabalha no hospital.",
        "Esta noite vamos ao cinema com os nossos amigos.",
    ),
    "nl": (
        "Hallo, ik heet Pieter en ik woon in Amsterdam.",
        "Het weer is vandaag erg mooi, we gaan naar het park.",
        "Ik wil graag een kopje koffie en een stuk taart.",
        "De trein naar de stad vertrekt elke ochtend om acht uur.",
        "Mijn zus is arts en ze werkt in het ziekenhuis.",
        "Vanavond gaan we met onze vrienden naar de bioscoop.",
    ),
    "ru": (
        "Здравствуйте, меня зовут Иван, и я живу в Москве.",
        "Сегодня очень хорошая погода, мы идём в парк.",
        "Я хотел бы чашку кофе и кусок торта, пожалуйста.",
        "Поезд в город отправляется каждое утро в восемь часов.",
        "Моя сестра работает врачом в больнице.",
        "Сегодня вечером мы идём в кино с друзьями.",  # noqa: RUF001
    ),
}

#: Languages whose espeak-ng voice Whisper base rarely recognises; measured apart.
HARD_LANGUAGES = ("pt", "nl", "ru")
#: The languages the detection goal is measured on.
LANGUAGES = tuple(lang for lang in SENTENCES if lang not in HARD_LANGUAGES)

#: One sentence per language that Whisper base detects and transcribes on its own, for tests.
PHRASES = {"en": SENTENCES["en"][0], "fr": SENTENCES["fr"][0], "es": SENTENCES["es"][1]}
#: "A coffee and a piece of cake": translated to English with "coffee" in it.
COFFEE = {lang: SENTENCES[lang][2] for lang in ("fr", "es")}


def speak(language: str, text: str) -> np.ndarray:
    """``text`` in ``language``'s espeak-ng voice, 16 kHz mono float32."""
    return synthesize(text, voice=VOICES[language])
