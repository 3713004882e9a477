"""Words the parser knows, as regular-expression fragments, in several languages.

Kept apart from the grammar so that a new language or a new label is one
line here. All fragments match the lower-cased, normalised text.
"""

from __future__ import annotations

# --- sides ---------------------------------------------------------------------
BUY_WORDS = (
    "buy|buys|buying|bought|long|longs|mua|лонг|купить|покупка|покупаю|покупаем|"
    "kupuj|kupno|kupujemy|kaufe|kaufen|compra|comprar|achat|acheter|góra|خرید"
)
SELL_WORDS = (
    "sell|sells|selling|sold|short|shorts|bán|шорт|продажа|продаю|продаем|продать|"
    "sprzedaj|sprzedaż|sprzedajemy|verkaufe|verkaufen|venta|vender|vente|vendre|dół|فروش"
)
BUY_SET = frozenset(BUY_WORDS.split("|"))

# --- level labels --------------------------------------------------------------
TP_LABEL = (
    r"take[\s-]?profits?|tps?|t\s?[.\-]\s?p|targets?|targeting|tgt?|tg|тейк\w*|"
    r"цел[ьи]\w*|hedef|objetivos?|mục\s?tiêu|هدف|cel"
)
SL_LABEL = (
    r"stop[\s/-]?loss(?:es)?|stoploss|s\s?[.\-]\s?l|sl|si(?=\s?[:=])|stop(?:\s?targets?)?|"
    r"стоп(?:-?лосс)?|حد\s?ضرر|stl"
)
ENTRY_LABEL = (
    r"entry(?:\s?(?:price|zone|targets?|orders?|point|level|area))?|entries|"
    r"enter(?:ed)?(?:\s?at)?|price\s?open|open\s?price|at\s?price|price|вход\w*|"
    r"точка\s?входа|ek|focus|wejście|giá\s?vào|điểm\s?vào|ورود|entrada|"
    r"en(?=\s?[@:])|in\s?zone|zone|between|b/n"
)
RUNNER = r"open|hold(?:ing)?|runner|trailing(?:\s?stop)?|leave\s?open|let\s?(?:it\s?)?run|every|∞"
WITHHELD = r"vip|hidden|later|soon|tba|tbd|premium|private|secret|mental"
LIMIT = r"limits?|pending"
MARKET = r"now|market|cmp|instant|immediately|ngay|luôn|сейчас|teraz|jetzt|ahora"
MORE = r"more|add|again|another|also|and|extra|plus|thêm|ещё|еще|dobieramy"
# labels whose numbers are not prices (rest of the line is skipped)
IGNORE_LABEL = (
    r"lot(?:s|\s?size)?|risk|leverage|signals?(?:\s?(?:no|number|id))?|id|time(?:frame)?|"
    r"date|expiry|expires?|r\s?[:/-]\s?r|rr|ratio|reward|exchanges?|shared|balance|"
    r"capital|account|duration|deposit|spread|volume|margin|chart|accuracy|posted|"
    r"equity|minimum|size|rủi\s?ro|риск"
)
# a line holding one of these reports an outcome; its numbers are not levels
REPORT = (
    r"hit|hits|done|reached|achieved|smashed|booked|zaliczon\w*|сработал\w*|khớp|"
    r"running|closed|secured|trúng|взят\w*"
)

# --- symbols -------------------------------------------------------------------
CURRENCIES = (
    "eur|usd|gbp|jpy|chf|aud|nzd|cad|zar|sgd|hkd|nok|sek|dkk|mxn|try|pln|cnh|huf|czk|"
    "xau|xag|xpt|xpd"
)
INDEX_PREFIX = (
    r"us|nas|ger|de|uk|jp|jpn|hk|aus|eu|stoxx|fra|esp|spx|sp|us\s?tec|ustec|cn|china|"
    r"sg|nq|ndx"
)
ALIASES: dict[str, str] = {
    "gold": "XAUUSD",
    "xau": "XAUUSD",
    "vàng": "XAUUSD",
    "vang": "XAUUSD",
    "gd": "XAUUSD",
    "золото": "XAUUSD",
    "złoto": "XAUUSD",
    "oro": "XAUUSD",
    "طلا": "XAUUSD",
    "silver": "XAGUSD",
    "xag": "XAGUSD",
    "серебро": "XAGUSD",
    "bitcoin": "BTCUSD",
    "btc": "BTCUSD",
    "биткоин": "BTCUSD",
    "ethereum": "ETHUSD",
    "eth": "ETHUSD",
    "dow jones": "US30",
    "dowjones": "US30",
    "dow": "US30",
    "dj": "US30",
    "wall street": "US30",
    "nasdaq": "NAS100",
    "ustech": "NAS100",
    "us tech": "NAS100",
    "dax": "GER40",
    "s&p 500": "US500",
    "s&p500": "US500",
    "s&p": "US500",
    "wti": "USOIL",
    "crude oil": "USOIL",
    "crude": "USOIL",
    "oil": "USOIL",
    "brent": "UKOIL",
}
ALIAS_RE = "|".join(
    sorted((k.replace(" ", r"\s?").replace("&", "&") for k in ALIASES), key=len, reverse=True)
)
# hashtags that are channel words, not instruments
TAG_STOPWORDS = frozenset(
    [
        "free",
        "signal",
        "signals",
        "vip",
        "update",
        "idea",
        "idee",
        "идея",
        "tips",
        "news",
        "result",
        "results",
        "trade",
        "trades",
        "forex",
        "crypto",
        "setup",
        "alert",
        "analysis",
        "profit",
        "win",
        "gold",
    ]
)

# --- words that neither label nor end a level list -------------------------------
FILLERS = frozenset(
    [
        "at",
        "from",
        "in",
        "on",
        "for",
        "the",
        "a",
        "an",
        "of",
        "is",
        "are",
        "set",
        "here",
        "zone",
        "area",
        "level",
        "levels",
        "to",
        "or",
        "and",
        "between",
        "b",
        "n",
        "only",
        "then",
        "around",
        "near",
        "both",
        "trade",
        "order",
        "orders",
        "position",
        "positions",
        "with",
        "this",
        "that",
        "it",
        "my",
        "our",
        "your",
        "we",
        "you",
        "all",
        "new",
        "please",
        "guys",
        "team",
        "again",
        "also",
        "type",
        "direction",
        "pair",
        "asset",
        "symbol",
        "coin",
        "currency",
        "instrument",
        "sl",
        "tp",
        "và",
        "giá",
        "lệnh",
        "kèo",
        "mn",
        "nhé",
        "ae",
        "cả",
        "nhà",
        "на",
        "по",
        "в",
        "и",
        "с",
    ]
)
