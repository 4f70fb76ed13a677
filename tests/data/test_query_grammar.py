"""PostgREST's URL query grammar → `apprun.data.query.ast`, as tables.

Rows marked ``# docs: <page>`` are the examples of docs.postgrest.org
(references/api/<page>); rows marked ``# QueryParams.hs`` are the doctests of
PostgREST's own parser (src/PostgREST/ApiRequest/QueryParams.hs). Query
strings are written decoded (``%20`` as a space, ``%22`` as ``"``), as
`parse_read` receives them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, Literal

import pytest

from apprun.data.query.ast import (
    AGGREGATES,
    CASTS,
    FILTER_OPS,
    BoolExpr,
    Condition,
    Embed,
    EmbedOptions,
    FieldPath,
    Filter,
    OrderItem,
    ReadQuery,
    SelectField,
    SelectItem,
    Star,
)
from apprun.data.query.grammar import (
    MAX_FILTERS,
    MAX_PARAMS,
    MAX_VALUE_LENGTH,
    parse_columns,
    parse_filter,
    parse_limit,
    parse_logic,
    parse_order,
    parse_read,
    parse_select,
)
from apprun.kernel.errors import BadRequest
from apprun.kernel.i18n import Translator

# --- builders -------------------------------------------------------------------------


def col(name: str, *keys: str, text: bool = False) -> FieldPath:
    return FieldPath(name, keys, text)


def flt(
    column: str | FieldPath,
    op: str,
    value: str | tuple[str, ...],
    *,
    negate: bool = False,
    modifier: str | None = None,
) -> Filter:
    path = col(column) if isinstance(column, str) else column
    return Filter(path, op, value, negate=negate, modifier=modifier)


def sel(
    column: str | FieldPath | None,
    *,
    alias: str | None = None,
    cast: str | None = None,
    aggregate: str | None = None,
    input_cast: str | None = None,
) -> SelectField:
    path = col(column) if isinstance(column, str) else column
    return SelectField(path, alias=alias, cast=cast, aggregate=aggregate, input_cast=input_cast)


def emb(
    relation: str,
    *select: SelectItem,
    alias: str | None = None,
    hint: str | None = None,
    inner: bool = False,
    spread: bool = False,
) -> Embed:
    return Embed(relation, select, alias=alias, hint=hint, inner=inner, spread=spread)


def ordr(column: str | FieldPath, *, desc: bool = False, nulls: Literal["first", "last"] | None = None) -> OrderItem:
    return OrderItem(col(column) if isinstance(column, str) else column, desc=desc, nulls=nulls)


def all_of(*items: Condition, negate: bool = False) -> BoolExpr:
    return BoolExpr("and", items, negate=negate)


def any_of(*items: Condition, negate: bool = False) -> BoolExpr:
    return BoolExpr("or", items, negate=negate)


STAR = Star()
Params = list[tuple[str, str]]


# --- select -------------------------------------------------------------------------

SELECT_CASES: list[tuple[str, str, tuple[SelectItem, ...]]] = [
    ("star", "*", (STAR,)),
    ("one column", "id", (sel("id"),)),
    # docs: tables_views (Vertical Filtering)
    ("docs columns", "first_name,age", (sel("first_name"), sel("age"))),
    # docs: tables_views (Renaming Columns)
    (
        "docs aliases",
        "fullName:full_name,birthDate:birth_date",
        (sel("full_name", alias="fullName"), sel("birth_date", alias="birthDate")),
    ),
    # docs: tables_views (Casting Columns)
    ("docs cast", "full_name,salary::text", (sel("full_name"), sel("salary", cast="text"))),
    # docs: tables_views (JSON Columns)
    (
        "docs json arrows",
        "id,json_data->>blood_type,json_data->phones",
        (sel("id"), sel(col("json_data", "blood_type", text=True)), sel(col("json_data", "phones"))),
    ),
    (
        "docs json array index",
        "id,json_data->phones->0->>number",
        (sel("id"), sel(col("json_data", "phones", "0", "number", text=True))),
    ),
    # docs: tables_views (Composite / Array Columns)
    (
        "docs composite and array",
        "id,location->>lat,location->>long,primary_language:languages->0",
        (
            sel("id"),
            sel(col("location", "lat", text=True)),
            sel(col("location", "long", text=True)),
            sel(col("languages", "0"), alias="primary_language"),
        ),
    ),
    ("docs computed column", "*,full_name", (STAR, sel("full_name"))),
    ("json path alias and cast", "alias:data->>b::int", (sel(col("data", "b", text=True), alias="alias", cast="int"),)),
    ("negative array index", "data->-1", (sel(col("data", "-1")),)),
    ("quoted json key", 'data->"a.b,c"->>"x y"', (sel(col("data", "a.b,c", "x y", text=True)),)),
    ("json key with punctuation", "data->!@#$%^&*_a", (sel(col("data", "!@#$%^&*_a")),)),  # QueryParams.hs
    ("json key with a dash", "data->a-b", (sel(col("data", "a-b")),)),
    ("every cast", ",".join(f"c::{c}" for c in sorted(CASTS)), tuple(sel("c", cast=c) for c in sorted(CASTS))),
    ("cast is case-insensitive", "c::TEXT", (sel("c", cast="text"),)),
    # docs: aggregate_functions
    ("docs sum", "amount.sum()", (sel("amount", aggregate="sum"),)),
    (
        "docs aliased aggregates",
        "total_amount:amount.sum(),avg_amount:amount.avg(),total_quantity:quantity.sum()",
        (
            sel("amount", alias="total_amount", aggregate="sum"),
            sel("amount", alias="avg_amount", aggregate="avg"),
            sel("quantity", alias="total_quantity", aggregate="sum"),
        ),
    ),
    (
        "docs group by",
        "amount.sum(),amount.avg(),order_date",
        (sel("amount", aggregate="sum"), sel("amount", aggregate="avg"), sel("order_date")),
    ),
    (
        "docs count",
        "count(),observation_count:observation.count(),order_date",
        (
            sel(None, aggregate="count"),
            sel("observation", alias="observation_count", aggregate="count"),
            sel("order_date"),
        ),
    ),
    (
        "docs cast the aggregated column",
        "order_details->tax_amount::numeric.sum()",
        (sel(col("order_details", "tax_amount"), aggregate="sum", input_cast="numeric"),),
    ),
    ("docs cast the aggregate", "amount.avg()::int", (sel("amount", aggregate="avg", cast="int"),)),
    ("cast both", "amount::numeric.sum()::text", (sel("amount", aggregate="sum", input_cast="numeric", cast="text"),)),
    (
        "docs aggregate beside an embed",
        "amount.sum(),customers(name)",
        (sel("amount", aggregate="sum"), emb("customers", sel("name"))),
    ),
    (
        "docs aggregate inside an embed",
        "name,city,state,orders(amount.sum(),order_date)",
        (sel("name"), sel("city"), sel("state"), emb("orders", sel("amount", aggregate="sum"), sel("order_date"))),
    ),
    (
        "docs aggregates in a spread",
        "order_date,...customers(subscription_date.max(),subscription_date.min())",
        (
            sel("order_date"),
            emb(
                "customers",
                sel("subscription_date", aggregate="max"),
                sel("subscription_date", aggregate="min"),
                spread=True,
            ),
        ),
    ),
    (
        "every aggregate",
        ",".join(f"x.{a}()" for a in sorted(AGGREGATES)),
        tuple(sel("x", aggregate=a) for a in sorted(AGGREGATES)),
    ),
    ("aliased count with cast", "n:count()::text", (sel(None, alias="n", aggregate="count", cast="text"),)),
    (
        "json path aggregate",
        "data->>n::int.sum()",
        (sel(col("data", "n", text=True), aggregate="sum", input_cast="int"),),
    ),
    # docs: resource_embedding
    (
        "docs many-to-one",
        "title,directors(id,last_name)",
        (sel("title"), emb("directors", sel("id"), sel("last_name"))),
    ),
    (
        "docs aliased embed",
        "title,director:directors(id,last_name)",
        (sel("title"), emb("directors", sel("id"), sel("last_name"), alias="director")),
    ),
    ("docs one-to-many", "last_name,films(title)", (sel("last_name"), emb("films", sel("title")))),
    (
        "docs hints",
        "name,billing_address:addresses!billing(name),shipping_address:addresses!shipping(name)",
        (
            sel("name"),
            emb("addresses", sel("name"), alias="billing_address", hint="billing"),
            emb("addresses", sel("name"), alias="shipping_address", hint="shipping"),
        ),
    ),
    (
        "docs nested embedding",
        "roles(character,films(title,year))",
        (emb("roles", sel("character"), emb("films", sel("title"), sel("year"))),),
    ),
    (
        "docs inner join",
        "title,actors!inner(first_name,last_name)",
        (sel("title"), emb("actors", sel("first_name"), sel("last_name"), inner=True)),
    ),
    ("docs empty embed", "title,actors()", (sel("title"), emb("actors"))),
    (
        "docs spread",
        "title,...directors(director_last_name:last_name)",
        (sel("title"), emb("directors", sel("last_name", alias="director_last_name"), spread=True)),
    ),
    (
        "docs spread in many-to-many",
        "title,actors:roles(character,...actors(first_name,last_name))",
        (
            sel("title"),
            emb(
                "roles",
                sel("character"),
                emb("actors", sel("first_name"), sel("last_name"), spread=True),
                alias="actors",
            ),
        ),
    ),
    (
        "docs digit-led aliases",
        "*,90_comps:competitions(name),91_comps:competitions(name)",
        (STAR, emb("competitions", sel("name"), alias="90_comps"), emb("competitions", sel("name"), alias="91_comps")),
    ),
    ("hint", "author!fk_name(*)", (emb("author", STAR, hint="fk_name"),)),
    ("hint then inner", "author!fk_name!inner(*)", (emb("author", STAR, hint="fk_name", inner=True),)),
    (
        "inner then hint",
        "alias:rel!inner!hint(*)",
        (emb("rel", STAR, alias="alias", hint="hint", inner=True),),
    ),  # QueryParams.hs
    ("left is the default join", "author!left(name)", (emb("author", sel("name")),)),
    ("quoted inner is a hint", 'author!"inner"(name)', (emb("author", sel("name"), hint="inner"),)),
    ("spread with hint and inner", "...rel!hint!inner(*)", (emb("rel", STAR, hint="hint", inner=True, spread=True),)),
    (
        "nested embeds",
        "*,client(*,nested(*))",  # QueryParams.hs
        (STAR, emb("client", STAR, emb("nested", STAR))),
    ),
    ("comments with authors", "comments(id,author(name))", (emb("comments", sel("id"), emb("author", sel("name"))),)),
    # Whitespace is ignored around names, commas and parentheses, as PostgREST's lexeme.
    (
        "whitespace",
        " id , alias : name ,\tauthor ( name , email ) , data -> a :: text ",
        (
            sel("id"),
            sel("name", alias="alias"),
            emb("author", sel("name"), sel("email")),
            sel(col("data", "a"), cast="text"),
        ),
    ),
    ("name with spaces", "first name", (sel("first name"),)),  # QueryParams.hs
    ("name with dashes", "identifier-with-dashes", (sel("identifier-with-dashes"),)),  # QueryParams.hs
    ("digits and dollar", "123,_,$", (sel("123"), sel("_"), sel("$"))),  # QueryParams.hs
    ("unicode name", "名字,émoji", (sel("名字"), sel("émoji"))),
    ("quoted name", '"my col","a,b":"x:y"', (sel("my col"), sel("x:y", alias="a,b"))),
    ("quoted escapes", r'"say \"hi\"","back\\slash"', (sel('say "hi"'), sel("back\\slash"))),
    ("quoted keeps spaces", '" leading and trailing spaces "', (sel(" leading and trailing spaces "),)),
    ("empty select", "", ()),
    ("column named count", "count", (sel("count"),)),
    ("quoted count is a column", '"count"', (sel("count"),)),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=n) for n, t, e in SELECT_CASES])
def test_select(text: str, expected: tuple[SelectItem, ...]) -> None:
    assert parse_select(text) == expected


# --- filters ------------------------------------------------------------------------

FILTER_CASES: list[tuple[str, tuple[str, str], Filter]] = [
    # docs: tables_views (Horizontal Filtering)
    ("docs lt", ("age", "lt.13"), flt("age", "lt", "13")),
    ("docs is true", ("student", "is.true"), flt("student", "is", "true")),
    ("docs not eq", ("a", "not.eq.2"), flt("a", "eq", "2", negate=True)),
    ("docs in", ("a", "in.(1,2,3)"), flt("a", "in", ("1", "2", "3"))),
    ("docs in with quoted commas", ("a", 'in.("hi,there","yes,you")'), flt("a", "in", ("hi,there", "yes,you"))),
    ("docs cs", ("tags", "cs.{example, new}"), flt("tags", "cs", "{example, new}")),
    ("docs cd", ("values", "cd.{1,2,3}"), flt("values", "cd", "{1,2,3}")),
    ("docs ov range", ("period", "ov.[2017-01-01,2017-06-30]"), flt("period", "ov", "[2017-01-01,2017-06-30]")),
    ("docs ov array", ("arr", "ov.{1,3}"), flt("arr", "ov", "{1,3}")),
    # docs: tables_views (Operator Modifiers)
    ("docs like any", ("last_name", "like(any).{O*,P*}"), flt("last_name", "like", ("O*", "P*"), modifier="any")),
    ("docs like all", ("last_name", "like(all).{O*,*n}"), flt("last_name", "like", ("O*", "*n"), modifier="all")),
    # docs: tables_views (Full-Text Search)
    ("docs fts language", ("my_tsv", "fts(french).amusant"), flt("my_tsv", "fts", "amusant", modifier="french")),
    ("docs plfts", ("my_tsv", "plfts.The Fat Cats"), flt("my_tsv", "plfts", "The Fat Cats")),
    (
        "docs not phfts",
        ("my_tsv", "not.phfts(english).The Fat Cats"),
        flt("my_tsv", "phfts", "The Fat Cats", negate=True, modifier="english"),
    ),
    (
        "docs not wfts",
        ("my_tsv", "not.wfts(french).amusant"),
        flt("my_tsv", "wfts", "amusant", negate=True, modifier="french"),
    ),
    ("docs fts", ("full_name", "fts.Beckett"), flt("full_name", "fts", "Beckett")),
    # docs: tables_views (JSON Columns, Composite / Array Columns)
    (
        "docs json text filter",
        ("json_data->>blood_type", "eq.A-"),
        flt(col("json_data", "blood_type", text=True), "eq", "A-"),
    ),
    ("docs json filter", ("json_data->age", "gt.20"), flt(col("json_data", "age"), "gt", "20")),
    ("docs composite filter", ("location->lat", "gte.19"), flt(col("location", "lat"), "gte", "19")),
    # docs: url_grammar
    (
        "docs quoted in values",
        ("name", 'in.("Hebdon,John","Williams,Mary")'),
        flt("name", "in", ("Hebdon,John", "Williams,Mary")),
    ),
    ("docs quoted column", ('"information.cpe"', "like.*MS*"), flt("information.cpe", "like", "*MS*")),
    ("docs escapes in in", ("name", r'in.("Quote:\"","Backslash:\\")'), flt("name", "in", ('Quote:"', "Backslash:\\"))),
    ("docs column with a space", ("Unit Price", "lt.200"), flt("Unit Price", "lt", "200")),
    # docs: resource_embedding (Null filtering on Embedded Resources)
    ("docs embed not null", ("actors", "not.is.null"), flt("actors", "is", "null", negate=True)),
    # Every operator.
    ("eq", ("a", "eq.1"), flt("a", "eq", "1")),
    ("neq", ("a", "neq.1"), flt("a", "neq", "1")),
    ("gt", ("a", "gt.1"), flt("a", "gt", "1")),
    ("gte", ("a", "gte.1"), flt("a", "gte", "1")),
    ("lt", ("a", "lt.1"), flt("a", "lt", "1")),
    ("lte", ("a", "lte.1"), flt("a", "lte", "1")),
    ("like keeps stars", ("a", "like.*abc*"), flt("a", "like", "*abc*")),
    ("ilike", ("a", "ilike.*ABC*"), flt("a", "ilike", "*ABC*")),
    ("match", ("a", "match.^a.*z$"), flt("a", "match", "^a.*z$")),
    ("imatch", ("a", "imatch.^A"), flt("a", "imatch", "^A")),
    ("isdistinct", ("a", "isdistinct.5"), flt("a", "isdistinct", "5")),
    ("cs json", ("data", 'cs.{"k":"v"}'), flt("data", "cs", '{"k":"v"}')),
    ("cs json array", ("data", 'cs.["a"]'), flt("data", "cs", '["a"]')),
    ("cd", ("a", "cd.{1}"), flt("a", "cd", "{1}")),
    ("ov", ("a", "ov.{1,2}"), flt("a", "ov", "{1,2}")),
    ("fts", ("a", "fts.cat & dog"), flt("a", "fts", "cat & dog")),
    ("plfts", ("a", "plfts.a b"), flt("a", "plfts", "a b")),
    ("phfts", ("a", "phfts(simple).a b"), flt("a", "phfts", "a b", modifier="simple")),
    ("wfts", ("a", 'wfts."a" -b'), flt("a", "wfts", '"a" -b')),
    ("is null", ("a", "is.null"), flt("a", "is", "null")),
    ("is not_null", ("a", "is.not_null"), flt("a", "is", "not_null")),
    ("is false", ("a", "is.false"), flt("a", "is", "false")),
    ("is unknown", ("a", "is.unknown"), flt("a", "is", "unknown")),
    ("is is case-insensitive", ("a", "is.NULL"), flt("a", "is", "null")),
    ("not in", ("a", "not.in.(1,2)"), flt("a", "in", ("1", "2"), negate=True)),
    ("not is", ("a", "not.is.true"), flt("a", "is", "true", negate=True)),
    # Values are raw after the operator: dots, commas, parentheses and quotes stay.
    ("value with dots and commas", ("a", "eq.1.5,2)("), flt("a", "eq", "1.5,2)(")),
    ("empty value", ("a", "eq."), flt("a", "eq", "")),
    ("value with quotes stays raw", ("a", 'eq."x"'), flt("a", "eq", '"x"')),
    # in lists
    ("in empty", ("a", "in.()"), flt("a", "in", ())),
    ("in keeps unquoted spaces", ("a", "in.( a, b)"), flt("a", "in", ("a", " b"))),
    ("in empty element", ("a", "in.(a,,b)"), flt("a", "in", ("a", "", "b"))),
    ("in quoted then text is raw", ("a", 'in.("a"b,c)'), flt("a", "in", ('"a"b', "c"))),
    ("in quoted parenthesis", ("a", 'in.("(x)",y)'), flt("a", "in", ("(x)", "y"))),
    ("in quoted empty", ("a", 'in.("")'), flt("a", "in", ("",))),
    ("in trailing whitespace", ("a", "in.(1) "), flt("a", "in", ("1",))),
    # any / all
    ("eq any", ("a", "eq(any).{a,b}"), flt("a", "eq", ("a", "b"), modifier="any")),
    ("like all", ("a", "like(all).{a*,b*}"), flt("a", "like", ("a*", "b*"), modifier="all")),
    ("any with quoted comma", ("a", 'eq(any).{"a,b", c }'), flt("a", "eq", ("a,b", "c"), modifier="any")),
    ("any empty", ("a", "gt(any).{}"), flt("a", "gt", (), modifier="any")),
    ("not lte all", ("a", "not.lte(all).{1,2}"), flt("a", "lte", ("1", "2"), negate=True, modifier="all")),
    ("ilike imatch gte lt any", ("a", "imatch(any).{^a,^b}"), flt("a", "imatch", ("^a", "^b"), modifier="any")),
    # Filter names
    ("json path with index", ("data->tags->0", "eq.x"), flt(col("data", "tags", "0"), "eq", "x")),
    ("spaces around the name", (" age ", "eq.1"), flt("age", "eq", "1")),
    ("name with dash", ("my-col", "eq.1"), flt("my-col", "eq", "1")),
    ("column named order when quoted", ('"order"', "eq.1"), flt("order", "eq", "1")),
]


@pytest.mark.parametrize(("given", "expected"), [pytest.param(g, e, id=n) for n, g, e in FILTER_CASES])
def test_filter(given: tuple[str, str], expected: Filter) -> None:
    assert parse_filter(*given) == expected


def test_every_operator_has_a_row() -> None:
    ops = {expected.op for _, _, expected in FILTER_CASES}
    assert ops == FILTER_OPS


# --- and / or -------------------------------------------------------------------------

LOGIC_CASES: list[tuple[str, str, BoolExpr]] = [
    # docs: tables_views (Logical operators)
    ("docs or", "or(age.lt.18,age.gt.21)", any_of(flt("age", "lt", "18"), flt("age", "gt", "21"))),
    ("docs not and", "not.and(a.gte.0,a.lte.100)", all_of(flt("a", "gte", "0"), flt("a", "lte", "100"), negate=True)),
    (
        "docs complex",
        "or(age.eq.14,not.and(age.gte.11,age.lte.17))",
        any_of(flt("age", "eq", "14"), all_of(flt("age", "gte", "11"), flt("age", "lte", "17"), negate=True)),
    ),
    # docs: tables_views (the quoted reserved characters example, with cs on both sides since adj is unsupported)
    (
        "docs quoted ranges",
        'or(age_range.cs."[18,21)",age_range.cs."[30,35]")',
        any_of(flt("age_range", "cs", "[18,21)"), flt("age_range", "cs", "[30,35]")),
    ),
    # docs: resource_embedding
    (
        "docs embeds null",
        "or(actors.is.null,directors.is.null)",
        any_of(flt("actors", "is", "null"), flt("directors", "is", "null")),
    ),
    (
        "docs embeds not null",
        "or(directors.not.is.null,actors.not.is.null)",
        any_of(flt("directors", "is", "null", negate=True), flt("actors", "is", "null", negate=True)),
    ),
    ("and", "and(a.eq.1,b.lt.2)", all_of(flt("a", "eq", "1"), flt("b", "lt", "2"))),
    ("not or", "not.or(a.eq.1)", any_of(flt("a", "eq", "1"), negate=True)),
    ("not like", "or(name.not.like.*x*)", any_of(flt("name", "like", "*x*", negate=True))),
    ("array value", "or(tags.cs.{a,b},tags.cd.{c})", any_of(flt("tags", "cs", "{a,b}"), flt("tags", "cd", "{c}"))),
    ("json value", 'or(data.cs.{"a":1,"b":2})', any_of(flt("data", "cs", '{"a":1,"b":2}'))),
    ("nested json without commas is raw", 'or(data.cs.{"a":{"b":1}})', any_of(flt("data", "cs", '{"a":{"b":1}}'))),
    (
        "nested json quoted",
        r'or(data.cs."{\"a\":{\"b\":1,\"c\":2}}")',
        any_of(flt("data", "cs", '{"a":{"b":1,"c":2}}')),
    ),
    (
        "json arrow",
        "or(data->>k.eq.v,data->a->b.gt.1)",
        any_of(flt(col("data", "k", text=True), "eq", "v"), flt(col("data", "a", "b"), "gt", "1")),
    ),
    (
        "quoted comma",
        'or(name.eq."Smith, J.",name.eq.x)',
        any_of(flt("name", "eq", "Smith, J."), flt("name", "eq", "x")),
    ),
    ("quoted paren", 'and(f.eq."a(b)")', all_of(flt("f", "eq", "a(b)"))),
    ("quoted escapes", r'and(f.eq."a\"b\\c")', all_of(flt("f", "eq", 'a"b\\c'))),
    ("quote not followed by comma is raw", 'and(f.eq."a"b)', all_of(flt("f", "eq", '"a"b'))),
    ("unterminated quote is raw", 'and(f.eq."ab)', all_of(flt("f", "eq", '"ab'))),
    (
        "in list",
        'or(id.in.(1,"2,3"),id.not.in.())',
        any_of(flt("id", "in", ("1", "2,3")), flt("id", "in", (), negate=True)),
    ),
    ("is", "and(a.is.NULL,b.is.not_null)", all_of(flt("a", "is", "null"), flt("b", "is", "not_null"))),
    ("any from braces", "or(tags.eq(any).{a,b})", any_of(flt("tags", "eq", ("a", "b"), modifier="any"))),
    ("any from quotes", 'or(tags.like(all)."{a*,b*}")', any_of(flt("tags", "like", ("a*", "b*"), modifier="all"))),
    (
        "fts",
        "or(t.fts(english).cat,t.plfts.a b)",
        any_of(flt("t", "fts", "cat", modifier="english"), flt("t", "plfts", "a b")),
    ),
    ("empty value", "or(a.eq.,b.eq.)", any_of(flt("a", "eq", ""), flt("b", "eq", ""))),
    ("raw value keeps spaces", "or(a.eq.x y )", any_of(flt("a", "eq", "x y "))),
    # Whitespace around names, commas and parentheses is ignored; a raw value keeps its own, as in PostgREST.
    ("whitespace", " or ( a .eq.1, and ( b.eq.2 ) ) ", any_of(flt("a", "eq", "1"), all_of(flt("b", "eq", "2 ")))),
    (
        "columns named like keywords",
        "or(or.eq.1,not.eq.2,and.is.null)",
        any_of(flt("or", "eq", "1"), flt("not", "eq", "2"), flt("and", "is", "null")),
    ),
    (
        "deep nesting",
        "or(a.eq.1,and(b.eq.2,or(c.eq.3,not.and(d.eq.4,e.eq.5))))",
        any_of(
            flt("a", "eq", "1"),
            all_of(
                flt("b", "eq", "2"),
                any_of(flt("c", "eq", "3"), all_of(flt("d", "eq", "4"), flt("e", "eq", "5"), negate=True)),
            ),
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=n) for n, t, e in LOGIC_CASES])
def test_logic(text: str, expected: BoolExpr) -> None:
    assert parse_logic(text) == expected


# --- order ----------------------------------------------------------------------------

ORDER_CASES: list[tuple[str, str, tuple[OrderItem, ...]]] = [
    # docs: tables_views (Ordering)
    ("docs two columns", "age.desc,height.asc", (ordr("age", desc=True), ordr("height"))),
    ("docs default ascending", "age", (ordr("age"),)),
    ("docs nullsfirst", "age.nullsfirst", (ordr("age", nulls="first"),)),
    ("docs desc nullslast", "age.desc.nullslast", (ordr("age", desc=True, nulls="last"),)),
    ("docs json", "location->>lat", (ordr(col("location", "lat", text=True)),)),
    ("docs json desc", "json_data->>age.desc", (ordr(col("json_data", "age", text=True), desc=True),)),
    # docs: resource_embedding (Embedded Filters)
    ("docs two names", "last_name,first_name", (ordr("last_name"), ordr("first_name"))),
    # QueryParams.hs
    ("asc nullslast on a json key", "json_col->key.asc.nullslast", (ordr(col("json_col", "key"), nulls="last"),)),
    ("name desc nullsfirst", "name.desc.nullsfirst", (ordr("name", desc=True, nulls="first"),)),
    ("json index", "data->0.desc", (ordr(col("data", "0"), desc=True),)),
    (
        "mixed",
        "age.desc.nullslast,name,data->>k.asc",
        (ordr("age", desc=True, nulls="last"), ordr("name"), ordr(col("data", "k", text=True))),
    ),
    ("whitespace", " a .desc , b ", (ordr("a", desc=True), ordr("b"))),
    ("quoted", '"my col".desc', (ordr("my col", desc=True),)),
    ("column named desc", "desc.asc", (ordr("desc"),)),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=n) for n, t, e in ORDER_CASES])
def test_order(text: str, expected: tuple[OrderItem, ...]) -> None:
    assert parse_order(text) == expected


# --- limit, columns ---------------------------------------------------------------------

LIMIT_CASES: list[tuple[str, str, int]] = [
    ("zero", "0", 0),
    ("docs fifteen", "15", 15),  # docs: tables_views (Limits and Pagination)
    ("spaces", " 30 ", 30),
    ("bigint max", str(2**63 - 1), 2**63 - 1),
    ("leading zeros", "007", 7),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=n) for n, t, e in LIMIT_CASES])
def test_limit(text: str, expected: int) -> None:
    assert parse_limit(text) == expected


COLUMNS_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # docs: tables_views (Specifying Columns, On Conflict)
    ("docs columns", "source,publication_date,figure", ("source", "publication_date", "figure")),
    ("docs on_conflict", "name", ("name",)),
    ("quoted, as supabase-js sends them", '"id","my col"', ("id", "my col")),
    ("whitespace", " a , b ", ("a", "b")),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=n) for n, t, e in COLUMNS_CASES])
def test_columns(text: str, expected: tuple[str, ...]) -> None:
    assert parse_columns(text) == expected


# --- the whole query string ------------------------------------------------------------

READ_CASES: list[tuple[str, Params, ReadQuery]] = [
    ("nothing", [], ReadQuery()),
    # docs: tables_views
    (
        "docs and",
        [("age", "gte.18"), ("student", "is.true")],
        ReadQuery(where=(flt("age", "gte", "18"), flt("student", "is", "true"))),
    ),
    (
        "docs complex logic",
        [("grade", "gte.90"), ("student", "is.true"), ("or", "(age.eq.14,not.and(age.gte.11,age.lte.17))")],
        ReadQuery(
            where=(
                flt("grade", "gte", "90"),
                flt("student", "is", "true"),
                any_of(flt("age", "eq", "14"), all_of(flt("age", "gte", "11"), flt("age", "lte", "17"), negate=True)),
            )
        ),
    ),
    (
        "docs not.and",
        [("not.and", "(a.gte.0,a.lte.100)")],
        ReadQuery(where=(all_of(flt("a", "gte", "0"), flt("a", "lte", "100"), negate=True),)),
    ),
    ("docs limit offset", [("limit", "15"), ("offset", "30")], ReadQuery(limit=15, offset=30)),
    (
        "docs limited update",
        [("limit", "10"), ("order", "id"), ("last_login", "lt.2017-01-01")],
        ReadQuery(where=(flt("last_login", "lt", "2017-01-01"),), order=(ordr("id"),), limit=10),
    ),
    (
        "docs json select and filter",
        [("select", "id,json_data->blood_type"), ("json_data->>blood_type", "eq.A-")],
        ReadQuery(
            select=(sel("id"), sel(col("json_data", "blood_type"))),
            where=(flt(col("json_data", "blood_type", text=True), "eq", "A-"),),
        ),
    ),
    (
        "docs composite",
        [("select", "id,location->>lat,location->>long,primary_language:languages->0"), ("location->lat", "gte.19")],
        ReadQuery(
            select=(
                sel("id"),
                sel(col("location", "lat", text=True)),
                sel(col("location", "long", text=True)),
                sel(col("languages", "0"), alias="primary_language"),
            ),
            where=(flt(col("location", "lat"), "gte", "19"),),
        ),
    ),
    (
        "docs columns",
        [("columns", "source,publication_date,figure")],
        ReadQuery(columns=("source", "publication_date", "figure")),
    ),
    ("docs on_conflict", [("on_conflict", "name")], ReadQuery(on_conflict=("name",))),
    # docs: resource_embedding (Embedded Filters)
    (
        "docs embedded order",
        [("select", "*,actors(*)"), ("actors.order", "last_name,first_name")],
        ReadQuery(
            select=(STAR, emb("actors", STAR)),
            embedded={"actors": EmbedOptions(order=(ordr("last_name"), ordr("first_name")))},
        ),
    ),
    (
        "docs embedded in",
        [("select", "*,roles(*)"), ("roles.character", "in.(Chico,Harpo,Groucho)")],
        ReadQuery(
            select=(STAR, emb("roles", STAR)),
            embedded={"roles": EmbedOptions(where=(flt("character", "in", ("Chico", "Harpo", "Groucho")),))},
        ),
    ),
    (
        "docs embedded or",
        [("select", "*,roles(*)"), ("roles.or", "(character.eq.Gummo,character.eq.Zeppo)")],
        ReadQuery(
            select=(STAR, emb("roles", STAR)),
            embedded={
                "roles": EmbedOptions(where=(any_of(flt("character", "eq", "Gummo"), flt("character", "eq", "Zeppo")),))
            },
        ),
    ),
    (
        "docs embedded limit offset",
        [("select", "*,actors(*)"), ("actors.limit", "10"), ("actors.offset", "2")],
        ReadQuery(select=(STAR, emb("actors", STAR)), embedded={"actors": EmbedOptions(limit=10, offset=2)}),
    ),
    (
        "docs aliases filtered",
        [
            ("select", "*,90_comps:competitions(name),91_comps:competitions(name)"),
            ("90_comps.year", "eq.1990"),
            ("91_comps.year", "eq.1991"),
        ],
        ReadQuery(
            select=(
                STAR,
                emb("competitions", sel("name"), alias="90_comps"),
                emb("competitions", sel("name"), alias="91_comps"),
            ),
            embedded={
                "90_comps": EmbedOptions(where=(flt("year", "eq", "1990"),)),
                "91_comps": EmbedOptions(where=(flt("year", "eq", "1991"),)),
            },
        ),
    ),
    (
        "docs nested embedded filters",
        [
            ("select", "*,roles(*,actors(*))"),
            ("roles.actors.order", "last_name"),
            ("roles.actors.first_name", "like.*Tom*"),
        ],
        ReadQuery(
            select=(STAR, emb("roles", STAR, emb("actors", STAR))),
            embedded={
                "roles.actors": EmbedOptions(where=(flt("first_name", "like", "*Tom*"),), order=(ordr("last_name"),)),
            },
        ),
    ),
    (
        "docs inner with filter",
        [("select", "title,actors!inner(first_name,last_name)"), ("actors.first_name", "eq.Jehanne")],
        ReadQuery(
            select=(sel("title"), emb("actors", sel("first_name"), sel("last_name"), inner=True)),
            embedded={"actors": EmbedOptions(where=(flt("first_name", "eq", "Jehanne"),))},
        ),
    ),
    (
        "docs empty embed filter",
        [("select", "title,actors()"), ("actors.first_name", "eq.Jehanne"), ("actors", "not.is.null")],
        ReadQuery(
            select=(sel("title"), emb("actors")),
            where=(flt("actors", "is", "null", negate=True),),
            embedded={"actors": EmbedOptions(where=(flt("first_name", "eq", "Jehanne"),))},
        ),
    ),
    (
        "docs or across embeds",
        [
            ("select", "title,actors(),directors()"),
            ("directors.first_name", "eq.John"),
            ("actors.first_name", "eq.John"),
            ("or", "(directors.not.is.null,actors.not.is.null)"),
        ],
        ReadQuery(
            select=(sel("title"), emb("actors"), emb("directors")),
            where=(any_of(flt("directors", "is", "null", negate=True), flt("actors", "is", "null", negate=True)),),
            embedded={
                "directors": EmbedOptions(where=(flt("first_name", "eq", "John"),)),
                "actors": EmbedOptions(where=(flt("first_name", "eq", "John"),)),
            },
        ),
    ),
    (
        "docs spread filter",
        [("select", "title,...directors(director_last_name:last_name)"), ("title", "like.*Workers*")],
        ReadQuery(
            select=(sel("title"), emb("directors", sel("last_name", alias="director_last_name"), spread=True)),
            where=(flt("title", "like", "*Workers*"),),
        ),
    ),
    # The brief's own examples
    (
        "embedded options of every kind",
        [
            ("select", "id,comments(id,title,author(name))"),
            ("comments.order", "id.desc"),
            ("comments.limit", "2"),
            ("comments.offset", "1"),
            ("comments.or", "(title.eq.a,title.eq.b)"),
            ("comments.and", "(id.gt.1)"),
            ("comments.not.or", "(id.eq.5)"),
            ("comments.not.and", "(id.eq.6)"),
            ("comments.title", "eq.x"),
            ("comments.author.name", "eq.y"),
            ("comments.author.limit", "1"),
        ],
        ReadQuery(
            select=(sel("id"), emb("comments", sel("id"), sel("title"), emb("author", sel("name")))),
            embedded={
                "comments": EmbedOptions(
                    where=(
                        any_of(flt("title", "eq", "a"), flt("title", "eq", "b")),
                        all_of(flt("id", "gt", "1")),
                        any_of(flt("id", "eq", "5"), negate=True),
                        all_of(flt("id", "eq", "6"), negate=True),
                        flt("title", "eq", "x"),
                    ),
                    order=(ordr("id", desc=True),),
                    limit=2,
                    offset=1,
                ),
                "comments.author": EmbedOptions(where=(flt("name", "eq", "y"),), limit=1),
            },
        ),
    ),
    (
        "repeated keys are ANDed in order",
        [("age", "gt.1"), ("age", "lt.9"), ("or", "(a.eq.1,b.eq.1)"), ("or", "(c.eq.1,d.eq.1)"), ("age", "neq.5")],
        ReadQuery(
            where=(
                flt("age", "gt", "1"),
                flt("age", "lt", "9"),
                any_of(flt("a", "eq", "1"), flt("b", "eq", "1")),
                any_of(flt("c", "eq", "1"), flt("d", "eq", "1")),
                flt("age", "neq", "5"),
            )
        ),
    ),
    (
        "select after embedded filters",
        [("author.name", "eq.y"), ("select", "title,author(name)")],
        ReadQuery(
            select=(sel("title"), emb("author", sel("name"))),
            embedded={"author": EmbedOptions(where=(flt("name", "eq", "y"),))},
        ),
    ),
    (
        "embedded json filter",
        [("select", "*,comments(*)"), ("comments.data->>k", "eq.v")],
        ReadQuery(
            select=(STAR, emb("comments", STAR)),
            embedded={"comments": EmbedOptions(where=(flt(col("data", "k", text=True), "eq", "v"),))},
        ),
    ),
    (
        "quoted option words are columns",
        [('"order"', "eq.1"), ('"limit"', "eq.2"), ("order->a", "eq.3")],
        ReadQuery(where=(flt("order", "eq", "1"), flt("limit", "eq", "2"), flt(col("order", "a"), "eq", "3"))),
    ),
    (
        "a column named not",
        [("not", "eq.1")],
        ReadQuery(where=(flt("not", "eq", "1"),)),
    ),
    ("empty select", [("select", "")], ReadQuery(select=())),
    (
        "json path order and filter",
        [("order", "data->>k.desc.nullsfirst"), ("data->a->>b", "ilike.*x*")],
        ReadQuery(
            where=(flt(col("data", "a", "b", text=True), "ilike", "*x*"),),
            order=(ordr(col("data", "k", text=True), desc=True, nulls="first"),),
        ),
    ),
]


@pytest.mark.parametrize(("params", "expected"), [pytest.param(p, e, id=n) for n, p, e in READ_CASES])
def test_read(params: Params, expected: ReadQuery) -> None:
    assert parse_read(params) == expected


# --- refusals ---------------------------------------------------------------------------

Kind = Literal["select", "filter", "logic", "order", "limit", "columns", "read"]


PARSERS: dict[Kind, Callable[[Any], object]] = {
    "select": parse_select,
    "filter": lambda given: parse_filter(*given),
    "logic": parse_logic,
    "order": parse_order,
    "limit": parse_limit,
    "columns": parse_columns,
    "read": parse_read,
}


def run(kind: Kind, given: Any) -> object:
    """Call the parser ``kind`` on ``given`` (a (column, value) pair for filter, a list of pairs for read)."""
    return PARSERS[kind](given)


def described(error: BadRequest) -> str:
    return json.dumps(error.details, ensure_ascii=False) + " " + (error.hint or "")


DEEP_SELECT = "a(" * 6 + "x" + ")" * 6
DEEP_LOGIC = "or(" * 6 + "a.eq.1" + ")" * 6

REFUSALS: list[tuple[str, Kind, Any, str]] = [
    # select — QueryParams.hs doctests
    ("bracket after a name", "select", "id,clients(name[])", '"position": 15'),
    ("bad negative index", "select", "data->>-78xy", "a JSON key or array index"),
    ("hint on a column", "select", "name!hint", "'(' and the embed's columns"),
    ("hint on star", "select", "*!hint", "',' or ')' after the select item"),
    ("cast without a type", "select", "name::", "a type to cast to"),
    ("alias on a spread", "select", "alias:...rel(*)", "spread embeds (...rel) take no alias"),
    ("json path on an embed", "select", "rel->jsonpath(*)", "a column with a JSON path or a cast cannot be embedded"),
    # select — ours
    ("unknown cast", "select", "salary::money", "casts: "),
    ("cast on an embed", "select", "author(name)::text", "',' or the end of select"),
    ("unbalanced open", "select", "author(name", "every '(' of an embed needs its ')'"),
    ("unbalanced close", "select", "author(name))", "unbalanced ')'"),
    ("stray close", "select", "a)", "unbalanced ')'"),
    ("leading comma", "select", ",a", "a column, * or an embed"),
    ("double comma", "select", "a,,b", "remove the extra ','"),
    ("trailing comma", "select", "a,", "remove the extra ','"),
    ("trailing comma in an embed", "select", "author(name,)", "remove the extra ','"),
    ("empty alias", "select", ":a", "a column, * or an embed"),
    ("alias without a column", "select", "a:", "a column, * or an embed"),
    ("empty quoted name", "select", '""', "a quoted name cannot be empty"),
    ("unterminated quote", "select", '"abc', "a closing double quote"),
    ("alias on star", "select", "x:*", "* and spread embeds (...rel) take no alias"),
    ("unknown aggregate", "select", "amount.median()", "an aggregate"),
    ("aggregate without parentheses", "select", "amount.sum", "an aggregate"),
    ("dotted column", "select", "author.name", "an embed"),
    ("count with an argument", "select", "count(id)", "col.count() counts"),
    ("two hints", "select", "a!b!c(*)", "at most one hint"),
    ("two join types", "select", "a!inner!left(*)", "one join type"),
    ("arrow after text arrow", "select", "data->>a->b", "no arrow after ->>"),
    ("empty json key", "select", "data->", "a JSON key or array index"),
    ("dash at the end of a name", "select", "a-", "a column, * or an embed"),
    ("single colon cast", "select", "a:b:text", "',' or ')' after the select item"),
    ("spread without parentheses", "select", "...author", "'(' and the embed's columns"),
    ("dotted embed alias", "select", '"a.b":rel(*)', "an embed name without '.'"),
    ("select too deep", "select", DEEP_SELECT, "at most 5 levels of embedding"),
    ("select too long", "select", "a," * MAX_VALUE_LENGTH, "at most 4096 characters"),
    ("nul in select", "select", "a\x00b", "any character but NUL"),
    # filters — QueryParams.hs doctests
    ("unknown operator", "filter", ("a", "noop.0"), "an operator such as eq"),
    ("fts without a language", "filter", ("a", "fts().value"), "a text search configuration"),
    ("eq with empty modifier", "filter", ("a", "eq().value"), "(any) or (all)"),
    ("is with a modifier", "filter", ("a", "is().value"), "is takes no modifier"),
    ("in with a modifier", "filter", ("a", "in().value"), "in takes no modifier"),
    ("no operator", "filter", ("id", "val"), "an operator such as eq"),
    # filters — ours
    ("empty filter", "filter", ("a", ""), "an operator such as eq"),
    ("operator without a dot", "filter", ("a", "eq"), "'.' and a value after the operator"),
    ("upper-case operator", "filter", ("a", "EQ.1"), "an operator such as eq"),
    ("double negation", "filter", ("a", "not.not.eq.1"), "an operator such as eq"),
    ("range operator", "filter", ("range", "adj.(1,10)"), "adj (a range operator) is not supported"),
    ("strictly left", "filter", ("range", "sl.(1,10)"), "sl (a range operator) is not supported"),
    ("is with anything else", "filter", ("a", "is.maybe"), "null, not_null, true, false or unknown"),
    ("is with trailing text", "filter", ("a", "is.nullx"), "null, not_null, true, false or unknown"),
    ("is with trailing punctuation", "filter", ("a", "is.null!"), "the end of the value"),
    ("in without parentheses", "filter", ("a", "in.1,2"), "in takes a list"),
    ("in unclosed", "filter", ("a", "in.(1,2"), "',' or ')' to close the list"),
    ("in trailing text", "filter", ("a", "in.(1)x"), "the end of the value"),
    ("in unquoted comma in a value", "filter", ("a", "in.(a(b),c)"), "the end of the value"),
    ("neq takes no any", "filter", ("a", "neq(any).{1}"), "neq takes no modifier"),
    ("unknown modifier", "filter", ("a", "eq(some).{1}"), "(any) or (all)"),
    ("any without braces", "filter", ("a", "eq(any).(1,2)"), "a list in braces"),
    ("any with nested braces", "filter", ("a", "eq(any).{a,{b}}"), "a list element"),
    ("any with an empty element", "filter", ("a", "eq(any).{a,,b}"), "a list element"),
    ("any with a trailing comma", "filter", ("a", "eq(any).{a,}"), "a list element"),
    ("any with an unclosed quote", "filter", ("a", 'eq(any).{"a}'), "a closing double quote"),
    ("any with text after a quote", "filter", ("a", 'eq(any).{"a"b}'), "',' or '}'"),
    ("fts unclosed", "filter", ("a", "fts(english.x"), "a text search configuration and ')'"),
    (
        "embedded path in parse_filter",
        "filter",
        ("a.b", "eq.1"),
        "embedded filters (embed.column) are read by parse_read",
    ),
    ("empty column", "filter", ("", "eq.1"), "a column name"),
    ("text arrow then arrow", "filter", ("data->>a->b", "eq.1"), "no arrow after ->>"),
    ("value too long", "filter", ("a", "eq." + "x" * MAX_VALUE_LENGTH), "at most 4096 characters"),
    ("nul in a value", "filter", ("a", "eq.x\x00"), "any character but NUL"),
    # and / or — QueryParams.hs doctests
    ("empty or", "logic", "or()", "a condition (column.operator.value)"),
    ("in without parentheses in or", "logic", "or(id.in.1,2,id.eq.3)", "in takes a list"),
    ("reversed parentheses", "logic", "or)(", "and(…), or(…)"),
    ("unknown group word", "logic", "and(ord(id.eq.1,id.eq.1),id.eq.2)", "'.' and an operator after the column"),
    ("not xor", "logic", "or(id.eq.1,not.xor(id.eq.2,id.eq.3))", "an operator such as eq"),
    # and / or — ours
    ("bare parentheses", "logic", "(a.eq.1)", "and(…), or(…)"),
    ("unclosed or", "logic", "or(a.eq.1", "',' or ')'"),
    ("extra close", "logic", "or(a.eq.1))", "unbalanced ')'"),
    ("unquoted comma in a value", "logic", "or(a.eq.x,y)", "'.' and an operator after the column"),
    ("unquoted paren in a value", "logic", "or(a.eq.f(x))", "unbalanced ')'"),
    ("trailing comma in or", "logic", "or(a.eq.1,)", "a condition (column.operator.value)"),
    ("embedded column in or", "logic", "or(comments.title.eq.x)", "an operator such as eq"),
    (
        "range operator in or",
        "logic",
        'or(age_range.adj."[18,21)")',
        "adj (a range operator) is not supported",
    ),  # docs: tables_views
    ("or too deep", "logic", DEEP_LOGIC, "at most 5 levels of nested and/or"),
    ("is with trailing text in or", "logic", "or(a.is.null!)", "',' or ')'"),
    (
        "nested json with commas unquoted",
        "logic",
        'or(data.cs.{"a":{"b":1,"c":2}})',
        "'.' and an operator after the column",
    ),
    ("brace inside a json string unquoted", "logic", 'or(data.cs.{"a":"}"})', "',' or ')'"),
    # order — QueryParams.hs doctests
    ("order by an embed", "order", "clients(name,id)", "ordering by an embed's column is not supported"),
    ("order by an embed column", "order", "directors(last_name).desc", "order inside it"),  # docs: resource_embedding
    ("ac", "order", "id.ac", "asc, desc, nullsfirst or nullslast"),
    ("descc", "order", "id.descc", "asc, desc, nullsfirst or nullslast"),
    ("nulsfist", "order", "id.nulsfist", "asc, desc, nullsfirst or nullslast"),
    ("nullslasttt", "order", "id.nullslasttt", "asc, desc, nullsfirst or nullslast"),
    ("smth34", "order", "id.smth34", "asc, desc, nullsfirst or nullslast"),
    ("asc nlsfst", "order", "id.asc.nlsfst", "nullsfirst or nullslast"),
    ("asc nullslasttt", "order", "id.asc.nullslasttt", "nullsfirst or nullslast"),
    ("asc smth34", "order", "id.asc.smth34", "nullsfirst or nullslast"),
    # order — ours
    ("empty order", "order", "", "a column name"),
    ("trailing comma in order", "order", "a,", "a column name"),
    ("two directions", "order", "a.asc.desc", "nullsfirst or nullslast"),
    ("nulls before direction", "order", "a.nullsfirst.desc", "asc, desc, nullsfirst or nullslast"),
    ("order trailing text", "order", "a b.desc c", "',' or the end of order"),
    # limit
    ("negative limit", "limit", "-1", "a non-negative integer"),
    ("fractional limit", "limit", "1.5", "a non-negative integer"),
    ("word limit", "limit", "ten", "a non-negative integer"),
    ("empty limit", "limit", "", "a non-negative integer"),
    ("huge limit", "limit", "9" * 20, "a non-negative integer"),
    ("beyond bigint", "limit", str(2**63), "a non-negative integer"),
    ("unicode digits", "limit", "١٢", "a non-negative integer"),
    # columns
    ("empty columns", "columns", "", "a column name"),
    ("trailing comma in columns", "columns", "a,", "a column name"),
    ("columns trailing text", "columns", "a b)", "',' or the end of the list"),
    # the whole query
    ("unknown embed in a filter", "read", [("comments.title", "eq.x")], "select the embed, e.g. select=*,comments(*)"),
    (
        "unknown embed in an option",
        "read",
        [("select", "*,author(*)"), ("comments.limit", "1")],
        "the key (alias, else name)",
    ),
    ("relation name when aliased", "read", [("select", "c:comments(*)"), ("comments.limit", "1")], "or use its alias"),
    ("unknown nested embed", "read", [("select", "*,a(*)"), ("a.b.c", "eq.1")], "select=*,a(*)"),
    ("two selects", "read", [("select", "a"), ("select", "b")], "this parameter once"),
    ("two limits", "read", [("limit", "1"), ("limit", "2")], "this parameter once"),
    ("two embedded orders", "read", [("select", "*,c(*)"), ("c.order", "a"), ("c.order", "b")], "this parameter once"),
    ("or without parentheses", "read", [("or", "a.eq.1,b.eq.2")], "'(' and conditions"),
    ("or with trailing text", "read", [("or", "(a.eq.1)x")], "the end of the conditions"),
    ("bad limit in read", "read", [("limit", "-5")], "a non-negative integer"),
    ("bad embedded offset", "read", [("select", "*,c(*)"), ("c.offset", "x")], '"parameter": "c.offset"'),
    ("bad key", "read", [("a..b", "eq.1")], "a column name or an embed path"),
    ("key with trailing text", "read", [("data->a.b", "eq.1")], "'.', '->', '->>' or the end of the name"),
    ("too many params", "read", [("a", "eq.1")] * (MAX_PARAMS + 1), f"at most {MAX_PARAMS} parameters"),
    ("too many filters", "read", [("a", "eq.1")] * (MAX_FILTERS + 1), f"at most {MAX_FILTERS} conditions"),
    (
        "too many filters inside or",
        "read",
        [("or", "(" + ",".join(["a.eq.1"] * (MAX_FILTERS + 1)) + ")")],
        f"at most {MAX_FILTERS} conditions",
    ),
    ("key too long", "read", [("a" * (MAX_VALUE_LENGTH + 1), "eq.1")], "at most 4096 characters"),
    ("nul in a key", "read", [("a\x00", "eq.1")], "any character but NUL"),
    (
        "deep logic in read",
        "read",
        [("and", "(" + "or(" * 5 + "a.eq.1" + ")" * 6)],
        "at most 5 levels of nested and/or",
    ),
]


@pytest.mark.parametrize(("kind", "given", "fragment"), [pytest.param(k, g, f, id=n) for n, k, g, f in REFUSALS])
def test_refusal(kind: Kind, given: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        run(kind, given)
    error = caught.value
    assert error.code == "data.invalid_query"
    assert error.status == 400
    assert "parameter" in error.details
    assert fragment in described(error), described(error)


def test_the_refusal_table_has_unique_names() -> None:
    names = [row[0] for row in REFUSALS]
    assert len(names) == len(set(names))


# --- where a refusal points -----------------------------------------------------------

POSITIONS: list[tuple[str, Kind, Any, dict[str, Any]]] = [
    (
        "select",
        "select",
        "id,author(name,,x)",
        {"parameter": "select", "part": "value", "position": 15, "found": ",x)"},
    ),
    ("cast", "select", "a,b::money", {"position": 5, "found": "money"}),
    ("filter operator", "filter", ("age", "not.gtx.5"), {"parameter": "age", "part": "value", "position": 4}),
    (
        "filter name",
        "filter",
        ("data->>", "eq.5"),
        {"parameter": "data->>", "part": "name", "position": 7, "found": "end of input"},
    ),
    ("logic", "logic", "or(a.eq.1,b.zz.2)", {"parameter": "or", "position": 12, "found": "zz.2)"}),
    ("any element", "filter", ("a", "eq(any).{x, ,y}"), {"position": 12, "found": ",y}"}),
    ("order", "order", "a.desc,b.up", {"parameter": "order", "position": 9, "found": "up"}),
    ("or parameter value", "read", [("or", "(a.eq.1,b.xx.2)")], {"parameter": "or", "part": "value", "position": 10}),
    (
        "embedded parameter",
        "read",
        [("select", "*,c(*)"), ("c.order", "x.sideways")],
        {"parameter": "c.order", "position": 2},
    ),
    ("embed path", "read", [("c.x", "eq.1")], {"parameter": "c.x", "part": "name", "position": 0}),
]


@pytest.mark.parametrize(("kind", "given", "expected"), [pytest.param(k, g, e, id=n) for n, k, g, e in POSITIONS])
def test_refusal_position(kind: Kind, given: Any, expected: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as caught:
        run(kind, given)
    details = caught.value.details
    assert {key: details.get(key) for key in expected} == expected, details


# --- depth ------------------------------------------------------------------------------


def nested_select(levels: int) -> str:
    return "x(" * levels + "id" + ")" * levels


def nested_logic(levels: int) -> str:
    return "or(" * levels + "a.eq.1" + ")" * levels


@pytest.mark.parametrize("max_depth", [1, 2, 5, 32])
def test_depth_limits_are_exact(max_depth: int) -> None:
    parse_select(nested_select(max_depth), max_depth=max_depth)
    parse_logic(nested_logic(max_depth), max_depth=max_depth)
    parse_read([("select", nested_select(max_depth))], max_depth=max_depth)
    parse_read([("or", nested_logic(max_depth)[2:])], max_depth=max_depth)
    for refused in (
        lambda: parse_select(nested_select(max_depth + 1), max_depth=max_depth),
        lambda: parse_logic(nested_logic(max_depth + 1), max_depth=max_depth),
        lambda: parse_read([("select", nested_select(max_depth + 1))], max_depth=max_depth),
        lambda: parse_read([("or", nested_logic(max_depth + 1)[2:])], max_depth=max_depth),
    ):
        with pytest.raises(BadRequest) as caught:
            refused()
        assert f"at most {max_depth} levels" in caught.value.details["expected"]


def test_deep_embed_paths_follow_select() -> None:
    query = parse_read([("select", nested_select(5)), ("x.x.x.x.x.id", "eq.1"), ("x.x.x.x.x.limit", "3")])
    assert query.embedded == {"x.x.x.x.x": EmbedOptions(where=(flt("id", "eq", "1"),), limit=3)}


@pytest.mark.parametrize("max_depth", [0, 33, -1])
def test_max_depth_is_bounded_for_callers(max_depth: int) -> None:
    with pytest.raises(ValueError, match="max_depth"):
        parse_read([], max_depth=max_depth)


def test_bounds_are_inclusive() -> None:
    parse_read([("a", "eq.1")] * MAX_FILTERS)
    parse_read([("limit", "1"), *[("a", "eq.1")] * MAX_FILTERS])
    parse_filter("a", "eq." + "x" * (MAX_VALUE_LENGTH - 3))
    parse_read([("select", "a"), ("order", "a"), *[("b", "is.null")] * MAX_FILTERS])
    parse_read([("a", "eq.1")] * MAX_FILTERS + [("limit", "1")] * 0 + [("select", "*")] * 1)
    parse_read([("order", "a"), ("limit", "1"), *[("a", "eq.1")] * (MAX_PARAMS - 102), ("or", "(a.eq.1)")])


# --- fuzz: garbage in, BadRequest or a result out, never anything else ------------------

TOKENS = [
    *"abcxyz_019 \t.,:;()!*\"\\{}[]<>=&|~^%$#@'`?/+-",
    "->",
    "->>",
    "::",
    "...",
    "not.",
    "or(",
    "and(",
    "in.(",
    "eq.",
    "is.null",
    "eq(any).{",
    "fts(english).",
    "count()",
    ".sum()",
    "!inner",
    "\x00",
    "é",
    "中",
    "\u200b",
    "\ud7ff",
]

VALID_SAMPLES: list[tuple[Kind, Any]] = [
    *[("select", t) for _, t, _ in SELECT_CASES],
    *[("filter", g) for _, g, _ in FILTER_CASES],
    *[("logic", t) for _, t, _ in LOGIC_CASES],
    *[("order", t) for _, t, _ in ORDER_CASES],
]


def survive(kind: Kind, given: Any) -> None:
    """``given`` parses, or is refused with a well-formed BadRequest; nothing else may escape."""
    refused: BadRequest | None = None
    try:
        run(kind, given)
    except BadRequest as error:
        refused = error
    if refused is not None:
        assert refused.code == "data.invalid_query"
        assert isinstance(refused.details, dict)
        assert "parameter" in refused.details


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(3)
        i = rng.randint(0, len(chars))
        if action == 0 and chars:
            del chars[min(i, len(chars) - 1)]
        elif action == 1:
            chars.insert(i, rng.choice(TOKENS))
        elif chars:
            j = rng.randrange(len(chars))
            k = rng.randrange(len(chars))
            chars[j], chars[k] = chars[k], chars[j]
    return "".join(chars)


def test_fuzz_random_soup() -> None:
    rng = random.Random(20240601)
    for _ in range(4000):
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 40)))
        other = "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 12)))
        for kind in ("select", "logic", "order", "limit", "columns"):
            survive(kind, text)
        survive("logic", "or(" + text + ")")
        survive("filter", (other, text))
        survive("read", [(other, text), ("select", text), ("or", "(" + text + ")")])


def test_fuzz_mutated_valid_input() -> None:
    rng = random.Random(7)
    for _ in range(20):
        for kind, given in VALID_SAMPLES:
            if kind == "filter":
                column, value = given
                survive(kind, (mutate(rng, column) if rng.random() < 0.3 else column, mutate(rng, value)))
            else:
                survive(kind, mutate(rng, given))
    for _, params, _ in READ_CASES:
        for _ in range(20):
            survive("read", [(mutate(rng, k) if rng.random() < 0.3 else k, mutate(rng, v)) for k, v in params])


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(("select", "a(" * 2000 + ")" * 2000), id="select parentheses"),
        pytest.param(("select", "(" * 4000), id="select open parentheses"),
        pytest.param(("select", ")" * 4000), id="select close parentheses"),
        pytest.param(("logic", "or(" * 1300 + ")" * 1300), id="logic groups"),
        pytest.param(("logic", "or(" + "(" * 4000), id="logic parentheses"),
        pytest.param(("filter", ("a", "in." + "(" * 4000)), id="in parentheses"),
        pytest.param(("filter", ("a", "eq(any)." + "{" * 4000)), id="any braces"),
        pytest.param(("select", '"' * 4000), id="quotes"),
        pytest.param(("select", "\\" * 4000), id="backslashes"),
        pytest.param(("order", ".desc" * 800), id="order directions"),
        pytest.param(("read", [("a." * 2000 + "b", "eq.1")]), id="long embed path"),
    ],
)
def test_huge_nesting_is_refused_not_crashed(given: tuple[Kind, Any]) -> None:
    kind, value = given
    with pytest.raises(BadRequest):
        run(kind, value)


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(("logic", "or(a.cs." + "{" * 4000 + ")"), id="logic braces"),
        pytest.param(("logic", "or(" + "a.cs.{," * 580 + "a.eq.1)"), id="logic brace per value"),
        pytest.param(("logic", "or(" + 'a.eq.",' * 580 + "a.eq.1)"), id="logic quote per value"),
        pytest.param(("select", "data" + "->a" * 1300), id="long json path"),
        pytest.param(("select", "a:" * 2000), id="aliases"),
        pytest.param(("filter", ("a", "in.(" + '",' * 2000 + ")")), id="in quotes"),
    ],
)
def test_pathological_but_flat_input_is_parsed_or_refused(given: tuple[Kind, Any]) -> None:
    kind, value = given
    survive(kind, value)


# --- the message ------------------------------------------------------------------------


def test_the_code_reads_in_english_and_chinese() -> None:
    translator = Translator.from_package()
    assert translator.gettext("data.invalid_query", "en") == "The query could not be understood; see details."
    assert translator.gettext("data.invalid_query", "zh_CN") == "无法理解该查询，详见 details。"
