"""Templates and the fact lexicon of the simulated Reddit.

Why one small lexicon: the world's "key facts" (who, what, where, objects, numbers) are words from
`LEXICON` plus numbers and age tags (`25F`), so `data.sim.gold` can find the facts of ANY post text with a
fixed rule, including texts a policy writes later. Filler sentences must contain no fact word (a test
checks), so every fact in a post is one the generator put there on purpose.

The vocabulary is kept modest (a few hundred words) so a tiny GPT-2 with a locally trained BPE can learn
to summarize it, while the text still reads like Reddit: age tags, TL;DRs, advice, jokes, rudeness.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

# ---------------------------------------------------------------------------------------------------
# Fact lexicon. Every word here is a fact when it appears in a post; categories let a "wrong fact"
# swap a word for another of the same kind.
# ---------------------------------------------------------------------------------------------------
PEOPLE = (
    "boyfriend", "girlfriend", "husband", "wife", "fiance", "mom", "dad", "sister", "brother",
    "roommate", "boss", "coworker", "friend", "neighbor", "landlord", "cousin", "grandma", "ex",
)
PLACES = (
    "work", "gym", "wedding", "party", "restaurant", "airport", "school", "church", "beach", "mall",
    "office", "bar", "hospital", "concert", "funeral", "hotel", "zoo", "park",
)
EVENT_OBJECTS: dict[str, tuple[str, ...]] = {
    "broke": ("phone", "laptop", "tv", "watch", "guitar", "camera", "bike"),
    "lost": ("phone", "wallet", "keys", "ring", "passport", "watch", "dog", "cat"),
    "borrowed": ("car", "laptop", "jacket", "bike", "camera", "card"),
    "crashed": ("car", "bike"),
    "sold": ("car", "guitar", "couch", "bike", "watch", "ring", "camera"),
    "forgot": ("birthday", "anniversary", "passport", "keys"),
    "checked": ("texts", "emails", "photos"),
    "deleted": ("texts", "photos", "emails"),
    "hid": ("ring", "wallet", "phone", "keys"),
    "stole": ("wallet", "phone", "jacket", "bike", "card"),
    "ate": ("cake", "pizza", "leftovers", "sandwich"),
    "burned": ("cake", "couch", "jacket", "pizza"),
    "ruined": ("cake", "jacket", "couch", "dinner", "vacation"),
    "cancelled": ("dinner", "vacation", "trip"),
    "spent": ("savings", "paycheck", "tuition", "bonus"),
    "wasted": ("savings", "paycheck", "bonus"),
    "maxed": ("card",),
}
EVENTS = tuple(EVENT_OBJECTS)
OBJECTS = tuple(sorted({o for objs in EVENT_OBJECTS.values() for o in objs}))
LEXICON: dict[str, tuple[str, ...]] = {"person": PEOPLE, "place": PLACES, "event": EVENTS, "object": OBJECTS}
FACT_WORDS: frozenset[str] = frozenset(w for words in LEXICON.values() for w in words)
# Informal spellings a summary may use; gold maps them to the lexicon word.
ALIASES = {"bf": "boyfriend", "gf": "girlfriend", "hubby": "husband", "mum": "mom", "fiancee": "fiance"}
RUDE_WORDS = frozenset(
    {"idiot", "stupid", "dumb", "moron", "loser", "pathetic", "trash", "crap", "clown", "garbage", "shut"}
)

GENDERED = {
    "boyfriend": "M", "girlfriend": "F", "husband": "M", "wife": "F", "fiance": "M", "mom": "F",
    "dad": "M", "sister": "F", "brother": "M", "grandma": "F",
}
PRONOUNS = {"M": ("he", "him", "his"), "F": ("she", "her", "her")}

# Events each subreddit's stories are about (a personalfinance post is about money, a tifu about a mistake).
SUBREDDIT_EVENTS: dict[str, tuple[str, ...]] = {
    "relationships": ("broke", "lost", "borrowed", "sold", "forgot", "checked", "deleted", "hid", "stole",
                      "ruined", "cancelled", "crashed"),
    "relationship_advice": ("broke", "lost", "borrowed", "sold", "forgot", "checked", "deleted", "hid",
                            "stole", "ruined", "cancelled", "crashed", "spent"),
    "tifu": ("broke", "lost", "crashed", "burned", "ate", "ruined", "deleted", "forgot", "sold"),
    "AskReddit": EVENTS,
    "personalfinance": ("spent", "wasted", "borrowed", "maxed", "sold", "crashed", "lost", "stole"),
}

# ---------------------------------------------------------------------------------------------------
# Sentence templates. Slots: {me} {other} (age tags), {person} {person2} {event} {object} {place}
# {money} {dur} {unit}; pronouns of the other person {he} {him} {his} and capitalized {He} {His}.
# Filler templates take NO fact slot and contain no fact word.
# ---------------------------------------------------------------------------------------------------
TITLES = {
    "relationships": (
        "My ({me}) {person} ({other}) {event} my {object} {at_place}. How do I bring it up?",
        "My ({me}) {person} ({other}) {event} my {object} and acts like it is nothing",
        "Me ({me}) and my {person} ({other}): {he} {event} my {object} {at_place}",
        "My {person} ({other}) {event} my {object}, am I ({me}) overreacting?",
    ),
    "relationship_advice": (
        "My {person} ({other}) {event} my {object} and now I ({me}) do not know what to do",
        "{Person} ({other}) {event} my {object} {at_place}, how do I move on?",
        "I ({me}) found out my {person} ({other}) {event} my {object}. Help",
        "My {person} ({other}) {event} my {object} {at_place} and will not say sorry",
    ),
    "tifu": (
        "TIFU: I {event} my {person}'s {object} {at_place}",
        "TIFU by being the reason my {object} is gone ({event} it {at_place})",
        "TIFU: {event} my {object} in front of my {person}",
        "TIFU {at_place} and my {person} will never let me forget it",
    ),
    "AskReddit": (
        "[Serious] My {person} {event} my {object} {at_place}. What would you do?",
        "What would you do if your {person} {event} your {object}?",
        "People whose {person} {event} their {object}, how did you deal with it?",
        "[Serious] My {person} ({other}) {event} my {object}. Is this normal?",
    ),
    "personalfinance": (
        "({me}) My {person} {event} my {object}, ${money} gone. What now?",
        "{Person} {event} my {object} (${money}), how do I get it back?",
        "I ({me}) {event} my {object} and owe ${money}. Where do I start?",
        "({me}) ${money} problem after my {person} {event} my {object}",
    ),
}

INTROS = {
    "default": (
        "So I ({me}) and my {person} ({other}) have been going back and forth about this for {dur} {unit}.",
        "Some background: this has been going on for {dur} {unit} between me ({me}) and my {person} ({other}).",
        "I ({me}) have been living with my {person} ({other}) for {dur} {unit} now.",
        "Throwaway because people know my main. I am {me} and my {person} is {other}, we have shared a place for {dur} {unit}.",
    ),
    "tifu": (
        "Obligatory this did not happen today, it happened {dur} {unit} ago.",
        "So this happened {dur} {unit} ago and I ({me}) still cringe about it.",
        "I ({me}) live with my {person} ({other}) and this was {dur} {unit} ago.",
    ),
    "personalfinance": (
        "I ({me}) have been saving for about {dur} {unit} and my {person} ({other}) knows it.",
        "Some background: I am {me}, I make an okay salary and I have been careful for {dur} {unit}.",
        "So I ({me}) share a place with my {person} ({other}) and we split costs for {dur} {unit} now.",
    ),
}
EVENT_SENTENCES = {
    "default": (
        "Last week we went {to_place} and {he} {event} my {object}.",
        "Yesterday {at_place}, {he} {event} my {object} and did not even tell me.",
        "A few days ago we were {at_place} and I found out {he} {event} my {object}.",
        "On Saturday, {at_place}, my {person} {event} my {object} right in front of me.",
    ),
    "tifu": (
        "We were {at_place} and I {event} my {person}'s {object}.",
        "So there I was {at_place}, and I somehow {event} my {object}.",
        "Long story short, {at_place} I {event} the {object} my {person} gave me.",
    ),
    "personalfinance": (
        "Last month {he} {event} my {object} and now I am short ${money}.",
        "Then {at_place} I found out {he} {event} my {object}, about ${money} in total.",
        "I {event} my {object} when I was {at_place} and it set me back ${money}.",
    ),
}
MONEY_SENTENCES = (
    "It cost me ${money} and I had been saving for months.",
    "That was ${money} that I can not get back.",
    "We are talking about ${money} here, not pocket change.",
    "Replacing it would be around ${money}.",
)
REACTIONS = (
    "When I brought it up, {he} just laughed.",
    "{He} said it was not a big deal and I should calm down.",
    "{He} has not said sorry once.",
    "I left early because I was so upset.",
    "Even {his} {person2} told {him} it was not okay.",
    "I asked my {person2} about it and they said I should talk to {him}.",
)
QUESTIONS = (
    "Am I overreacting?",
    "How do I talk to {him} about this?",
    "What should I do?",
    "Is this a red flag or am I being petty?",
    "How would you handle this?",
    "Any advice is welcome.",
)
TIFU_ENDINGS = ("Everyone still laughs about it.", "I will never live this down.", "Lesson learned I guess.")
PF_QUESTIONS = (
    "What are my options here?",
    "Should I take this to small claims?",
    "How do I fix my budget after this?",
    "Any advice is welcome.",
)
FILLER = {
    "default": (
        "Things have been good for the most part.",
        "We usually get along really well.",
        "I am not a dramatic person at all.",
        "Some context: we are both pretty busy and we do not see each other every day.",
        "I tried to be calm about it.",
        "I know this sounds small but it really got to me.",
        "This is not the first time something like this happened.",
        "I honestly do not know if I am the problem here.",
        "Sorry for formatting, I am on mobile.",
        "I have been thinking about this all week.",
        "It feels like I am always the one who has to fix things.",
        "I love {him} but I am so tired of this.",
        "{He} is usually a really sweet person.",
        "I did not say anything at first because I did not want a fight.",
        "Now {he} is acting like I am the bad guy.",
        "I just want things to go back to normal.",
        "Edit: a few people asked, yes we talked about it before.",
        "I keep going back and forth on this.",
        "It is not about the thing itself, it is about the respect.",
        "My gut says something is off.",
    ),
    "tifu": (
        "I am the kind of person who always thinks they are careful.",
        "You can probably guess where this is going.",
        "In my defense, I had not slept much the night before.",
        "Everyone went quiet and just stared at me.",
        "I wanted the ground to open up and swallow me.",
        "I tried to play it cool, which did not help at all.",
        "There was a lot of yelling after that.",
        "My face was red for the rest of the day.",
        "I still do not know how I managed it.",
        "Sorry for formatting, I am on mobile.",
    ),
    "personalfinance": (
        "I have an emergency fund but it is not very big.",
        "I do not have any other debt right now.",
        "I have been tracking every expense in a spreadsheet.",
        "My credit score is okay, nothing special.",
        "I am trying to be smart about this and not panic.",
        "I have read the wiki but my case feels different.",
        "Interest rates are killing me right now.",
        "I would rather sort this out without lawyers.",
        "I want to have a plan before I talk to anyone.",
        "Sorry if this is the wrong place to ask.",
    ),
}

# Summary pieces (first person for the author's TL;DR, second or third person for commenters).
TLDR_ENDINGS_FIRST = ("What do I do?", "Am I wrong?", "I feel awful.", "How do I fix this?", "Help.", "")
TLDR_ENDINGS_OTHER = ("talk to {him}.", "get your money back.", "you are not overreacting.",
                      "this is a red flag.", "time to move on.", "")
REACTION_SHORT = ("acts like it is nothing", "will not say sorry", "says I am overreacting",
                  "laughed about it", "blames me")
RUDE_PHRASES = ("OP is an idiot lol.", "What a moron.", "Honestly you sound pathetic.", "This is trash.",
                "Stop being dumb.", "Shut up and dump {him} already, loser.")
OFFTOPIC = (
    "This is probably fake.",
    "Why does every post here sound the same?",
    "I came here for the comments.",
    "Who even writes this much.",
    "Reddit moment.",
    "Not reading all that.",
)

# Ordinary (non-summary) top-level comments: advice, opinions, jokes. Few facts on purpose.
COMMENTS = {
    "default": (
        "{He} should pay you back, end of story.",
        "Talk to {him}. Communication is key.",
        "NTA. That is not okay at all.",
        "Honestly this sounds like a bigger problem than the {object}.",
        "Sit down with {him} and tell {him} how it made you feel.",
        "You are not overreacting. Respect matters.",
        "Has {he} done things like this before?",
        "I would be upset too, but I would give {him} one chance to make it right.",
        "This is a pattern, not a one time thing.",
        "Did {he} at least say sorry?",
        "Why would anyone do that {at_place} of all places?",
        "My {person2} did something like this once and we laughed about it later.",
        "Some people just do not think before they act.",
        "Get it in writing next time.",
        "I feel like we are missing some context here.",
        "Sounds exhausting. You deserve better.",
        "Couples counseling might help if you want to stay.",
        "Lol what.",
        "Ask {him} to replace the {object} and see how {he} reacts.",
        "Happened to me with my {person2}, it never got better.",
    ),
    "tifu": (
        "This is the best tifu I have read all week.",
        "F in the chat for the {object}.",
        "Could have been worse honestly.",
        "I laughed way too hard at this.",
        "At least you have a good story now.",
        "How did nobody stop you?",
        "Your {person} is a saint for putting up with this.",
        "Classic. Happens to the best of us.",
        "Did you ever tell them the whole truth?",
        "This is why I never bring anything {to_place}.",
    ),
    "personalfinance": (
        "Check the wiki, the prime directive covers this.",
        "Small claims court is made for cases like this.",
        "Get everything in writing from now on.",
        "Never lend money you can not afford to lose.",
        "Call the bank first thing tomorrow.",
        "Build your emergency fund back up before anything else.",
        "Talk to {him} before it turns into a legal fight.",
        "This is why you keep your finances separate.",
        "Freeze your credit, just in case.",
        "A budget app could help you see where it all goes.",
    ),
}
REPLIES = (
    "Agreed.", "This is the answer.", "Exactly this.", "I disagree, there is always more to the story.",
    "Underrated comment.", "Came here to say this.", "Lol same.", "This needs more upvotes.",
    "Not sure that is fair to {him}.", "Yep, been there.", "Source?", "Well said.",
)
OP_REPLIES = (
    "Thanks, I will try that.", "Update: I talked to {him} and it went okay.", "I did, {he} did not care.",
    "That is fair, I did not think of it that way.", "Thank you, this helps a lot.",
    "I think you are right.", "We are talking tonight, wish me luck.",
)
MOD_COMMENT = (
    "Hello and welcome! Please remember to be civil. Comments that break the rules will be removed. "
    "I am a bot, and this action was performed automatically."
)
USER_WORDS = ("quiet", "lucky", "sleepy", "happy", "salty", "random", "tired", "lazy", "honest", "crispy",
              "throwaway", "just", "not", "the", "real", "big", "tiny", "old", "new", "sad")
USER_NOUNS = ("panda", "potato", "otter", "noodle", "pickle", "ghost", "taco", "moose", "wizard", "muffin",
              "cactus", "badger", "owl", "lemon", "robot", "turtle", "dragon", "waffle", "goose", "bean")


@dataclass(frozen=True)
class Scenario:
    """The key facts of one post: what its text states and what a good summary should repeat."""

    subreddit: str
    me: str  # age tag of the author, e.g. "25F"
    other: str  # age tag of the other person
    person: str
    person2: str
    event: str
    object: str
    place: str
    money: str  # digits with commas, e.g. "1,200"
    dur: str  # digits, e.g. "3"
    unit: str  # "years" | "months" | "weeks"
    gender: str  # "M" | "F", the other person's

    def slots(self) -> dict[str, str]:
        return self._slots

    @cached_property
    def _slots(self) -> dict[str, str]:
        he, him, his = PRONOUNS[self.gender]
        return {
            "me": self.me, "other": self.other, "person": self.person, "Person": self.person.capitalize(),
            "person2": self.person2, "event": self.event, "object": self.object, "place": self.place,
            "money": self.money, "dur": self.dur, "unit": self.unit, "he": he, "him": him, "his": his,
            "He": he.capitalize(), "His": his.capitalize(),
            "at_place": at_place(self.place), "to_place": to_place(self.place),
        }


BARE_PLACES = frozenset({"work", "school", "church"})  # "at work", not "at the work"


def at_place(place: str) -> str:
    return f"at {place}" if place in BARE_PLACES else f"at the {place}"


def to_place(place: str) -> str:
    return f"to {place}" if place in BARE_PLACES else f"to the {place}"


def style(subreddit: str) -> str:
    """Template family of a subreddit: tifu and personalfinance have their own, the rest share one."""
    return subreddit if subreddit in ("tifu", "personalfinance") else "default"


def sample_scenario(rng: random.Random, subreddit: str) -> Scenario:
    """Draws the key facts of a post in the style of its subreddit."""
    events = SUBREDDIT_EVENTS.get(subreddit, EVENTS)
    event = rng.choice(events)
    person = rng.choice(PEOPLE)
    person2 = rng.choice([p for p in PEOPLE if p != person])
    gender = GENDERED.get(person) or rng.choice("MF")
    me_gender = rng.choice("MF")
    me_age = rng.randint(18, 45)
    other_age = max(18, me_age + rng.randint(-6, 8)) if person not in ("mom", "dad", "grandma") else me_age + rng.randint(22, 40)
    money = rng.choice((40, 60, 80, 120, 150, 200, 250, 300, 400, 500, 600, 800, 900, 1200, 1500, 2000,
                        2500, 3000, 4000, 5000, 7500, 12000))
    return Scenario(
        subreddit=subreddit, me=f"{me_age}{me_gender}", other=f"{other_age}{gender}", person=person,
        person2=person2, event=event, object=rng.choice(EVENT_OBJECTS[event]), place=rng.choice(PLACES),
        money=f"{money:,}", dur=str(rng.randint(2, 11)), unit=rng.choice(("years", "months", "weeks")),
        gender=gender,
    )


def fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def render_post(rng: random.Random, sc: Scenario, n_filler: int) -> tuple[str, str]:
    """(title, body without TL;DR): an intro, the event, money, reactions, `n_filler` filler sentences,
    and a closing question, grouped in 2-4 paragraphs."""
    st, s = style(sc.subreddit), sc.slots()
    title = fill(rng.choice(TITLES.get(sc.subreddit, TITLES["AskReddit"])), s)
    fillers = [fill(f, s) for f in rng.sample(FILLER[st], k=min(n_filler, len(FILLER[st])))]
    extra = max(0, n_filler - len(FILLER[st]))
    fillers += [fill(rng.choice(FILLER["default"]), s) for _ in range(extra)]
    core = [
        fill(rng.choice(INTROS[st]), s),
        fill(rng.choice(EVENT_SENTENCES[st]), s),
        fill(rng.choice(MONEY_SENTENCES), s),
        *[fill(r, s) for r in rng.sample(REACTIONS, k=2)],
    ]
    ending = {"tifu": TIFU_ENDINGS, "personalfinance": PF_QUESTIONS}.get(st, QUESTIONS)
    # Fillers go between the fact sentences so the body does not always open the same way.
    sentences = [core[0]]
    body_rest = core[1:] + fillers
    rng.shuffle(body_rest)
    # Keep the event before its reactions: move the event sentence up front among the rest.
    body_rest.remove(core[1])
    sentences += [core[1]] + body_rest + [fill(rng.choice(ending), s)]
    n_par = min(len(sentences), rng.randint(2, 4))
    cuts = sorted(rng.sample(range(1, len(sentences)), k=n_par - 1))
    paragraphs = [" ".join(sentences[a:b]) for a, b in zip([0, *cuts], [*cuts, len(sentences)])]
    return title, "\n\n".join(paragraphs)


@dataclass(frozen=True)
class SummaryPlan:
    """How a summary departs from a perfect one: which facts it keeps or gets wrong, and its flaws."""

    keep: frozenset[str]  # slots stated correctly: subset of {person, me, other, event, object, place, money, dur}
    wrong: frozenset[str]  # slots stated with a wrong value of the same kind
    length: str  # "ok" | "short" | "long"
    repetitive: bool
    rude: bool
    offtopic: bool


SLOTS = ("person", "other", "me", "event", "object", "place", "money", "dur")


def _wrong_value(rng: random.Random, sc: Scenario, slot: str) -> str:
    current = getattr(sc, slot)
    if slot in ("me", "other"):
        return f"{int(current[:-1]) + rng.choice((-5, -3, 3, 4, 7))}{current[-1]}"
    if slot == "money":
        return f"{int(current.replace(',', '')) * rng.choice((2, 3, 5)) + 100:,}"
    if slot == "dur":
        return str(int(current) + rng.randint(1, 6))
    pool = {"person": PEOPLE, "event": EVENTS, "object": OBJECTS, "place": PLACES}[slot]
    return rng.choice([w for w in pool if w != current])


def render_summary(rng: random.Random, sc: Scenario, plan: SummaryPlan, voice: str) -> str:
    """A TL;DR text (without the "TL;DR:" marker) following `plan`.

    voice "first" is the author's own TL;DR; "other" is a commenter summarizing the post for others.
    """
    s = sc.slots()
    v = {k: (getattr(sc, k) if k in plan.keep else _wrong_value(rng, sc, k) if k in plan.wrong else None)
         for k in SLOTS}
    pos = "my" if voice == "first" else rng.choice(("your", "OP's"))
    if plan.offtopic:
        # An off-topic "summary": a story about someone else's facts, or a one-liner.
        other = sample_scenario(rng, sc.subreddit)
        text = rng.choice(OFFTOPIC)
        if rng.random() < 0.5:
            text += f" Same thing happened with my {other.person}, {s['he']} {other.event} my {other.object}."
        return text
    if v["person"]:
        subj = f"{pos} {v['person']}" + (f" ({v['other']})" if v["other"] else "")
    else:
        subj = s["he"] + (f" ({v['other']})" if v["other"] else "")
    if v["me"]:
        subj = (f"I ({v['me']}) found out " if voice == "first" else f"OP ({v['me']}) says ") + subj
    obj_pos = pos if voice == "first" or pos == "your" else "OP's"
    if v["event"] and v["object"]:
        act = f"{v['event']} {obj_pos} {v['object']}"
    elif v["event"]:
        act = f"{v['event']} something important"
    elif v["object"]:
        act = f"did something with {obj_pos} {v['object']}"
    else:
        act = "messed up"
    parts = [f"{subj} {act}"]
    if v["place"]:
        parts.append(" " + at_place(v["place"]))
    if v["money"]:
        parts.append(rng.choice((f" and it cost ${v['money']}", f" (${v['money']})", f", ${v['money']} gone")))
    if v["dur"]:
        parts.append(rng.choice((f" after {v['dur']} {sc.unit} of this", f", going on {v['dur']} {sc.unit} now")))
    if voice == "first" and rng.random() < 0.5:
        parts.append(f" and {s['he']} {rng.choice(REACTION_SHORT)}")
    core = "".join(parts).strip()
    core = core[0].upper() + core[1:] + "."
    if plan.length == "short":
        words = [w for w in (v["person"], v["event"], v["object"], v["place"]) if w][:3]
        core = (" ".join(words) or "drama") + "."
    ending = fill(rng.choice(TLDR_ENDINGS_FIRST if voice == "first" else TLDR_ENDINGS_OTHER), s)
    text = core + (" " + ending if ending and plan.length != "short" else "")
    if plan.length == "long":
        st = style(sc.subreddit)
        extra = [fill(f, s) for f in rng.sample(FILLER[st], k=rng.randint(3, 6))]
        text = text + " " + " ".join(extra)
    if plan.repetitive:
        text = text + " " + (core + " " + core if rng.random() < 0.5 else "Like " + " really" * rng.randint(4, 8) + " bad.")
    if plan.rude:
        text = text + " " + fill(rng.choice(RUDE_PHRASES), s)
    return text.strip()


def render_comment(rng: random.Random, sc: Scenario) -> str:
    """An ordinary top-level comment (advice, opinion, joke): one to three sentences."""
    st, s = style(sc.subreddit), sc.slots()
    pool = COMMENTS[st] + (COMMENTS["default"] if st != "default" else ())
    return " ".join(fill(t, s) for t in rng.sample(pool, k=rng.choice((1, 1, 2, 2, 3))))


def render_reply(rng: random.Random, sc: Scenario, by_op: bool) -> str:
    return fill(rng.choice(OP_REPLIES if by_op else REPLIES), sc.slots())


def username(rng: random.Random) -> str:
    """A Reddit-looking username: `sleepy_otter1234`, `throwaway_noodle`, `Crispy-Taco-88`."""
    a, b = rng.choice(USER_WORDS), rng.choice(USER_NOUNS)
    form = rng.randrange(3)
    if form == 0:
        return f"{a}_{b}{rng.randint(1, 9999)}"
    if form == 1:
        return f"{a.capitalize()}-{b.capitalize()}-{rng.randint(1, 99)}"
    return f"{a}{b.capitalize()}"
