"""DynamoDB semantics in memory for the operations Junction uses: conditional writes, update
expressions, queries on the key schema with filters and paging, batch writes, TTL, and the
errors the real service returns (ConditionalCheckFailedException, ResourceNotFoundException,
ValidationException)."""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
from bisect import insort
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

Attr = dict[str, Any]  # a DynamoDB attribute value, e.g. {"S": "x"}
Item = dict[str, Attr]


class DynamoError(Exception):
    def __init__(self, code: str, message: str, item: Item | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.item = item


def _validation(message: str) -> DynamoError:
    return DynamoError("ValidationException", message)


# -- expressions ----------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+)|(?P<name>#[A-Za-z0-9_]+)|(?P<value>:[A-Za-z0-9_]+)|(?P<op><>|<=|>=|[=<>(),.\[\]+\-])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"}


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _validation(f"Invalid expression: syntax error near {text[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class Parser:
    def __init__(self, text: str, names: dict[str, str], values: dict[str, Attr]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.names = names
        self.values = values

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise _validation(f"Invalid expression: expected {value or 'more'}")
        self.i += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == value and token[0] in ("kw", "op"):
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    # paths and operands
    def path(self) -> list[str | int]:
        parts: list[str | int] = [self._name()]
        while True:
            if self.accept("."):
                parts.append(self._name())
            elif self.accept("["):
                parts.append(int(self.take()[1]))
                self.take("]")
            else:
                return parts

    def _name(self) -> str:
        kind, value = self.take()
        if kind == "name":
            if value not in self.names:
                raise _validation(f"An expression attribute name used in the document path is not defined: {value}")
            return self.names[value]
        if kind == "word":
            return value
        raise _validation(f"Invalid expression: unexpected {value}")

    def operand(self) -> Any:
        token = self.peek()
        if token is None:
            raise _validation("Invalid expression: operand expected")
        if token[0] == "value":
            self.i += 1
            if token[1] not in self.values:
                raise _validation(f"An expression attribute value used in expression is not defined: {token[1]}")
            return ("value", self.values[token[1]])
        if token[0] == "word" and self.peek(1) == ("op", "("):
            name = token[1]
            self.i += 2
            args = [self.operand()]
            while self.accept(","):
                args.append(self.operand())
            self.take(")")
            return ("call", name, args)
        return ("path", self.path())

    # conditions
    def condition(self) -> Any:
        left = self._and()
        while self.accept("OR"):
            left = ("or", left, self._and())
        return left

    def _and(self) -> Any:
        left = self._not()
        while self.accept("AND"):
            left = ("and", left, self._not())
        return left

    def _not(self) -> Any:
        if self.accept("NOT"):
            return ("not", self._not())
        if self.accept("("):
            inner = self.condition()
            self.take(")")
            return inner
        left = self.operand()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("=", "<>", "<", "<=", ">", ">="):
            self.i += 1
            return ("cmp", token[1], left, self.operand())
        if self.accept("BETWEEN"):
            low = self.operand()
            self.take("AND")
            return ("between", left, low, self.operand())
        if self.accept("IN"):
            self.take("(")
            options = [self.operand()]
            while self.accept(","):
                options.append(self.operand())
            self.take(")")
            return ("in", left, options)
        if left[0] == "call":
            return ("fn", left)
        raise _validation("Invalid expression: a condition was expected")


def _get(item: Item | None, path: list[str | int]) -> Attr | None:
    current: Any = None if item is None else {"M": item}
    for part in path:
        if current is None:
            return None
        if isinstance(part, int):
            values = current.get("L")
            current = values[part] if values is not None and part < len(values) else None
        else:
            current = (current.get("M") or {}).get(part)
    return cast("Attr | None", current)


def _number(attr: Attr) -> Decimal:
    return Decimal(attr["N"])


def _compare(a: Attr | None, b: Attr | None) -> int | None:
    if a is None or b is None:
        return None
    (ka, va), (kb, vb) = next(iter(a.items())), next(iter(b.items()))
    if ka != kb:
        return None
    if ka == "N":
        x, y = Decimal(va), Decimal(vb)
        return int(x > y) - int(x < y)
    if ka in ("S", "B"):
        return int(va > vb) - int(va < vb)
    return 0 if va == vb else None


def _value(item: Item | None, operand: Any) -> Attr | None:
    kind = operand[0]
    if kind == "value":
        return cast(Attr, operand[1])
    if kind == "path":
        return _get(item, operand[1])
    name, args = operand[1], operand[2]
    if name == "size":
        target = _value(item, args[0])
        if target is None:
            return None
        ((k, v),) = target.items()
        size = len(base64.b64decode(v)) if k == "B" else len(v.encode()) if k == "S" else len(v)
        return {"N": str(size)}
    if name == "if_not_exists":
        return _value(item, args[0]) or _value(item, args[1])
    if name == "list_append":
        a, b = _value(item, args[0]) or {"L": []}, _value(item, args[1]) or {"L": []}
        return {"L": list(a.get("L", [])) + list(b.get("L", []))}
    raise _validation(f"Invalid function name: {name}")


def evaluate(item: Item | None, node: Any) -> bool:
    kind = node[0]
    if kind == "or":
        return evaluate(item, node[1]) or evaluate(item, node[2])
    if kind == "and":
        return evaluate(item, node[1]) and evaluate(item, node[2])
    if kind == "not":
        return not evaluate(item, node[1])
    if kind == "cmp":
        op, a, b = node[1], _value(item, node[2]), _value(item, node[3])
        if op == "=":
            return a is not None and a == b
        if op == "<>":
            return a != b
        c = _compare(a, b)
        return c is not None and {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
    if kind == "between":
        v, lo, hi = _value(item, node[1]), _value(item, node[2]), _value(item, node[3])
        above, below = _compare(v, lo), _compare(v, hi)
        return above is not None and below is not None and above >= 0 and below <= 0
    if kind == "in":
        v = _value(item, node[1])
        return v is not None and any(v == _value(item, o) for o in node[2])
    call = node[1]
    name, args = call[1], call[2]
    if name == "attribute_exists":
        return _value(item, args[0]) is not None
    if name == "attribute_not_exists":
        return _value(item, args[0]) is None
    if name == "attribute_type":
        v, t = _value(item, args[0]), _value(item, args[1])
        return v is not None and t is not None and next(iter(v)) == t.get("S")
    if name == "begins_with":
        v, prefix = _value(item, args[0]), _value(item, args[1])
        return bool(v and prefix and "S" in v and "S" in prefix and v["S"].startswith(prefix["S"]))
    if name == "contains":
        v, part = _value(item, args[0]), _value(item, args[1])
        if not v or not part:
            return False
        if "S" in v and "S" in part:
            return part["S"] in v["S"]
        if "L" in v:
            return part in v["L"]
        for set_kind in ("SS", "NS", "BS"):
            if set_kind in v:
                return next(iter(part.values())) in v[set_kind]
        return False
    raise _validation(f"Invalid function name: {name}")


def _set(item: Item, path: list[str | int], value: Attr) -> None:
    container: Any = item
    for part in path[:-1]:
        nxt = container[part] if isinstance(part, int) else container.get(part)
        if nxt is None:
            raise _validation("The document path provided in the update expression is invalid for update")
        container = nxt.get("M") if "M" in nxt else nxt.get("L")
    last = path[-1]
    if isinstance(last, int):
        if last < len(container):
            container[last] = value
        else:
            container.append(value)
    else:
        container[last] = value


def _remove(item: Item, path: list[str | int]) -> None:
    parent: Any = _get(item, path[:-1]) if len(path) > 1 else {"M": item}
    if parent is None:
        return
    last = path[-1]
    if isinstance(last, int):
        values = parent.get("L")
        if values is not None and last < len(values):
            values.pop(last)
    else:
        (parent.get("M") or {}).pop(last, None)


def apply_update(item: Item, text: str, names: dict[str, str], values: dict[str, Attr]) -> None:
    p = Parser(text, names, values)
    current = item
    while not p.done():
        clause = p.take()
        if clause[0] != "kw" or clause[1] not in ("SET", "REMOVE", "ADD", "DELETE"):
            raise _validation(f"Invalid UpdateExpression: unexpected {clause[1]}")
        while True:
            if clause[1] == "SET":
                path = p.path()
                p.take("=")
                left = p.operand()
                if p.accept("+") or (p.peek() == ("op", "-") and p.take()):
                    op = p.tokens[p.i - 1][1]
                    right = p.operand()
                    a, b = _value(current, left), _value(current, right)
                    if not a or not b or "N" not in a or "N" not in b:
                        raise _validation("An operand in the update expression has an incorrect data type")
                    result = _number(a) + _number(b) if op == "+" else _number(a) - _number(b)
                    new: Attr | None = {"N": str(result)}
                else:
                    new = _value(current, left)
                if new is None:
                    raise _validation("The provided expression refers to an attribute that does not exist in the item")
                _set(current, path, copy.deepcopy(new))
            elif clause[1] == "REMOVE":
                _remove(current, p.path())
            elif clause[1] == "ADD":
                path = p.path()
                amount = _value(current, p.operand())
                existing = _get(current, path)
                if amount and "N" in amount:
                    base = _number(existing) if existing else Decimal(0)
                    _set(current, path, {"N": str(base + _number(amount))})
                elif amount:
                    ((kind, members),) = amount.items()
                    merged = sorted(set((existing or {}).get(kind, [])) | set(members))
                    _set(current, path, {kind: merged})
            else:  # DELETE from a set
                path = p.path()
                amount = _value(current, p.operand())
                existing = _get(current, path)
                if existing and amount:
                    ((kind, members),) = amount.items()
                    left_over = [m for m in existing.get(kind, []) if m not in members]
                    if left_over:
                        _set(current, path, {kind: left_over})
                    else:
                        _remove(current, path)
            if not p.accept(","):
                break


# -- tables ---------------------------------------------------------------------------------
def _key_value(attr: Attr) -> Any:
    ((kind, value),) = attr.items()
    return Decimal(value) if kind == "N" else value


@dataclass
class Table:
    name: str
    hash_key: str
    range_key: str | None
    definitions: list[dict[str, str]]
    key_schema: list[dict[str, str]]
    created_at: float = field(default_factory=time.time)
    ttl_attribute: str | None = None
    partitions: dict[Any, dict[Any, Item]] = field(default_factory=dict)
    sort_orders: dict[Any, list[Any]] = field(default_factory=dict)

    def key_of(self, key: Item) -> tuple[Any, Any]:
        if self.hash_key not in key or (self.range_key and self.range_key not in key):
            raise _validation("The provided key element does not match the schema")
        return _key_value(key[self.hash_key]), _key_value(key[self.range_key]) if self.range_key else None

    def get(self, key: Item) -> Item | None:
        h, r = self.key_of(key)
        return self.partitions.get(h, {}).get(r)

    def put(self, item: Item) -> None:
        h, r = self.key_of(item)
        partition = self.partitions.setdefault(h, {})
        if r not in partition and self.range_key:
            insort(self.sort_orders.setdefault(h, []), r)
        partition[r] = item

    def delete(self, key: Item) -> Item | None:
        h, r = self.key_of(key)
        partition = self.partitions.get(h)
        if not partition or r not in partition:
            return None
        old = partition.pop(r)
        if self.range_key:
            self.sort_orders[h].remove(r)
        if not partition:
            self.partitions.pop(h, None)
            self.sort_orders.pop(h, None)
        return old

    def count(self) -> int:
        return sum(len(p) for p in self.partitions.values())

    def describe(self) -> dict[str, Any]:
        return {
            "TableName": self.name,
            "TableStatus": "ACTIVE",
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.definitions,
            "ItemCount": self.count(),
            "TableArn": f"arn:aws:dynamodb:eu-central-1:000000000000:table/{self.name}",
            "CreationDateTime": self.created_at,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        }


def _project(item: Item, p: dict[str, Any]) -> Item:
    expression = p.get("ProjectionExpression")
    if not expression:
        return copy.deepcopy(item)
    names = p.get("ExpressionAttributeNames") or {}
    wanted = [names.get(part.strip(), part.strip()) for part in expression.split(",")]
    return {k: copy.deepcopy(v) for k, v in item.items() if k in wanted}


class DynamoService:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.lock = threading.RLock()

    def _table(self, name: str) -> Table:
        table = self.tables.get(name)
        if table is None:
            raise DynamoError("ResourceNotFoundException", "Requested resource not found")
        return table

    def _check(self, p: dict[str, Any], existing: Item | None) -> None:
        expression = p.get("ConditionExpression")
        if not expression:
            return
        node = Parser(expression, p.get("ExpressionAttributeNames") or {}, p.get("ExpressionAttributeValues") or {})
        tree = node.condition()
        if not node.done():
            raise _validation("Invalid ConditionExpression: trailing tokens")
        if not evaluate(existing, tree):
            keep = existing if p.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            raise DynamoError("ConditionalCheckFailedException", "The conditional request failed", keep)

    # -- control plane ---------------------------------------------------------------------
    def CreateTable(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if p["TableName"] in self.tables:
                raise DynamoError("ResourceInUseException", f"Table already exists: {p['TableName']}")
            schema = p["KeySchema"]
            hash_key = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
            range_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"), None)
            table = Table(p["TableName"], hash_key, range_key, p.get("AttributeDefinitions") or [], schema)
            self.tables[table.name] = table
            return {"TableDescription": table.describe()}

    def DescribeTable(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"Table": self._table(p["TableName"]).describe()}

    def DeleteTable(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(p["TableName"])
            del self.tables[table.name]
            return {"TableDescription": table.describe()}

    def ListTables(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"TableNames": sorted(self.tables)}

    def UpdateTimeToLive(self, p: dict[str, Any]) -> dict[str, Any]:
        spec = p["TimeToLiveSpecification"]
        with self.lock:
            self._table(p["TableName"]).ttl_attribute = spec["AttributeName"] if spec.get("Enabled") else None
        return {"TimeToLiveSpecification": spec}

    def DescribeTimeToLive(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            attr = self._table(p["TableName"]).ttl_attribute
        status = {"TimeToLiveStatus": "ENABLED", "AttributeName": attr} if attr else {"TimeToLiveStatus": "DISABLED"}
        return {"TimeToLiveDescription": status}

    def UpdateContinuousBackups(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}}

    def expire(self, now: float | None = None) -> int:
        """Delete items past their TTL (DynamoDB does this in the background)."""
        now = now or time.time()
        removed = 0
        with self.lock:
            for table in self.tables.values():
                if not table.ttl_attribute:
                    continue
                for partition in list(table.partitions.values()):
                    for item in list(partition.values()):
                        ttl = item.get(table.ttl_attribute)
                        if ttl and "N" in ttl and Decimal(ttl["N"]) < Decimal(now):
                            table.delete(item)
                            removed += 1
        return removed

    # -- items -----------------------------------------------------------------------------
    def PutItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(p["TableName"])
            item = p["Item"]
            existing = table.get(item)
            self._check(p, existing)
            table.put(copy.deepcopy(item))
            return {"Attributes": existing} if existing and p.get("ReturnValues") == "ALL_OLD" else {}

    def GetItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            item = self._table(p["TableName"]).get(p["Key"])
            return {"Item": _project(item, p)} if item else {}

    def DeleteItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(p["TableName"])
            existing = table.get(p["Key"])
            self._check(p, existing)
            table.delete(p["Key"])
            return {"Attributes": existing} if existing and p.get("ReturnValues") == "ALL_OLD" else {}

    def UpdateItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(p["TableName"])
            existing = table.get(p["Key"])
            self._check(p, existing)
            item = copy.deepcopy(existing) if existing else copy.deepcopy(p["Key"])
            if p.get("UpdateExpression"):
                apply_update(
                    item,
                    p["UpdateExpression"],
                    p.get("ExpressionAttributeNames") or {},
                    p.get("ExpressionAttributeValues") or {},
                )
            if table.key_of(item) != table.key_of(p["Key"]):
                raise _validation("Cannot update attribute: this attribute is part of the key")
            table.put(item)
            wanted = p.get("ReturnValues", "NONE")
            if wanted == "ALL_NEW":
                return {"Attributes": copy.deepcopy(item)}
            if wanted == "ALL_OLD" and existing:
                return {"Attributes": existing}
            return {}

    def _filter(self, items: list[Item], p: dict[str, Any]) -> list[Item]:
        expression = p.get("FilterExpression")
        if not expression:
            return items
        parser = Parser(expression, p.get("ExpressionAttributeNames") or {}, p.get("ExpressionAttributeValues") or {})
        tree = parser.condition()
        return [i for i in items if evaluate(i, tree)]

    def _page(self, items: list[Item], table: Table, p: dict[str, Any]) -> dict[str, Any]:
        start = p.get("ExclusiveStartKey")
        if start:
            key = table.key_of(start)
            for index, item in enumerate(items):
                if table.key_of(item) == key:
                    items = items[index + 1 :]
                    break
        limit = p.get("Limit")
        last = None
        if limit and len(items) > int(limit):
            items = items[: int(limit)]
            last_item = items[-1]
            last = {k: last_item[k] for k in (table.hash_key, table.range_key) if k}
        scanned = len(items)
        matched = self._filter(items, p)
        out: dict[str, Any] = {"Count": len(matched), "ScannedCount": scanned}
        if p.get("Select") != "COUNT":
            out["Items"] = [_project(i, p) for i in matched]
        if last:
            out["LastEvaluatedKey"] = last
        return out

    def Query(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("IndexName"):
            raise _validation("Secondary indexes are not available in the local stand-in")
        with self.lock:
            table = self._table(p["TableName"])
            names = p.get("ExpressionAttributeNames") or {}
            parser = Parser(p["KeyConditionExpression"], names, p.get("ExpressionAttributeValues") or {})
            tree = parser.condition()
            conditions = _flatten_and(tree)
            hash_value = None
            for c in conditions:
                if c[0] == "cmp" and c[1] == "=" and c[2][0] == "path" and c[2][1] == [table.hash_key]:
                    hash_value = _key_value(c[3][1])
            if hash_value is None:
                raise _validation("Query condition missed key schema element: " + table.hash_key)
            partition = table.partitions.get(hash_value, {})
            order = table.sort_orders.get(hash_value, []) if table.range_key else [None]
            items = [partition[r] for r in order if r in partition and evaluate(partition[r], tree)]
            if p.get("ScanIndexForward") is False:
                items.reverse()
            return self._page(items, table, p)

    def Scan(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            table = self._table(p["TableName"])
            items = [
                part[r]
                for h in sorted(table.partitions, key=str)
                for part in [table.partitions[h]]
                for r in (table.sort_orders.get(h, []) if table.range_key else [None])
            ]
            return self._page(items, table, p)

    def BatchWriteItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            requests = p.get("RequestItems") or {}
            if sum(len(v) for v in requests.values()) > 25:
                raise _validation("Too many items requested for the BatchWriteItem call")
            for name, writes in requests.items():
                table = self._table(name)
                for write in writes:
                    if "PutRequest" in write:
                        table.put(copy.deepcopy(write["PutRequest"]["Item"]))
                    elif "DeleteRequest" in write:
                        table.delete(write["DeleteRequest"]["Key"])
            return {"UnprocessedItems": {}}

    def BatchGetItem(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            out: dict[str, list[Item]] = {}
            for name, spec in (p.get("RequestItems") or {}).items():
                table = self._table(name)
                out[name] = [_project(i, spec) for k in spec["Keys"] if (i := table.get(k)) is not None]
            return {"Responses": out, "UnprocessedKeys": {}}


def _flatten_and(node: Any) -> list[Any]:
    if node[0] == "and":
        return _flatten_and(node[1]) + _flatten_and(node[2])
    return [node]
