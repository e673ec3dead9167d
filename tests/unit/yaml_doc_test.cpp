// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "error.h"
#include "policy.h"
#include "yaml_doc.h"

using namespace mcpwarden;

namespace {

YamlDocument read_ok(const std::string& text) {
    YamlProblem problem;
    auto doc = read_yaml(text, &problem);
    if (!doc) {
        ADD_FAILURE() << "rejected at " << problem.line << ":" << problem.column << ": "
                      << problem.message << "\n" << text;
        return YamlDocument();
    }
    return std::move(*doc);
}

YamlProblem read_bad(const std::string& text) {
    YamlProblem problem;
    auto doc = read_yaml(text, &problem);
    EXPECT_FALSE(doc) << "accepted:\n" << text;
    EXPECT_FALSE(problem.message.empty());
    return problem;
}

// The value of key in a mapping (the first, if repeated).
const YamlNode& get(const YamlNode& map, const std::string& key) {
    for (const auto& [k, v] : map.entries()) {
        if (k->is_scalar() && k->text() == key) return *v;
    }
    ADD_FAILURE() << "no key " << key;
    static const YamlNode none;
    return none;
}

}  // namespace

TEST(YamlDoc, BlockNestingWithPositions) {
    auto doc = read_ok("name: x\negress:\n  allow:\n    - cidr: 10.0.0.0/8\n      ports: [443, 80]\n");
    const YamlNode& root = doc.root();
    ASSERT_TRUE(root.is_mapping());
    EXPECT_EQ(root.size(), 2u);
    EXPECT_EQ(root.line(), 1);
    EXPECT_EQ(root.column(), 1);
    const YamlNode& allow = get(get(root, "egress"), "allow");
    ASSERT_TRUE(allow.is_sequence());
    EXPECT_EQ(allow.line(), 4);
    EXPECT_EQ(allow.column(), 5);  // the first '-'
    const YamlNode& rule = *allow.items()[0];
    EXPECT_TRUE(rule.is_mapping());
    EXPECT_EQ(rule.line(), 4);
    EXPECT_EQ(rule.column(), 7);  // the first key
    const YamlNode& cidr = get(rule, "cidr");
    EXPECT_EQ(cidr.text(), "10.0.0.0/8");
    EXPECT_EQ(cidr.line(), 4);
    EXPECT_EQ(cidr.column(), 13);
    const YamlNode& ports = get(rule, "ports");
    ASSERT_EQ(ports.items().size(), 2u);
    EXPECT_EQ(ports.items()[1]->text(), "80");
    EXPECT_EQ(ports.items()[1]->column(), 20);
    EXPECT_TRUE(ports.entries().empty());
    EXPECT_TRUE(rule.items().empty());
}

TEST(YamlDoc, FlowAndBlockStylesGiveTheSameTree) {
    auto a = read_ok("limits: { memory: 1Gi, pids: [1, 2] }\n");
    auto b = read_ok("limits:\n  memory: 1Gi\n  pids:\n    - 1\n    - 2\n");
    for (const YamlDocument* d : {&a, &b}) {
        const YamlNode& limits = get(d->root(), "limits");
        ASSERT_TRUE(limits.is_mapping());
        EXPECT_EQ(get(limits, "memory").text(), "1Gi");
        ASSERT_EQ(get(limits, "pids").size(), 2u);
        EXPECT_EQ(get(limits, "pids").items()[1]->text(), "2");
    }
    EXPECT_EQ(get(get(a.root(), "limits"), "memory").column(), 19);
}

TEST(YamlDoc, ScalarStyles) {
    auto doc = read_ok("a: plain\nb: 'single'\nc: \"dou\\tble\"\nd: |\n  lit\n  eral\ne: >\n  fol\n  ded\n");
    const YamlNode& r = doc.root();
    EXPECT_EQ(get(r, "a").style(), YamlScalarStyle::plain);
    EXPECT_FALSE(get(r, "a").quoted());
    EXPECT_EQ(get(r, "b").style(), YamlScalarStyle::single_quoted);
    EXPECT_TRUE(get(r, "b").quoted());
    EXPECT_EQ(get(r, "c").text(), "dou\tble");
    EXPECT_EQ(get(r, "c").style(), YamlScalarStyle::double_quoted);
    EXPECT_EQ(get(r, "d").text(), "lit\neral\n");
    EXPECT_EQ(get(r, "d").style(), YamlScalarStyle::literal);
    EXPECT_EQ(get(r, "e").text(), "fol ded\n");
    EXPECT_EQ(get(r, "e").style(), YamlScalarStyle::folded);
}

TEST(YamlDoc, NullAndEmptyValues) {
    auto doc = read_ok("a:\nb: ~\nc: null\nd: NULL\ne: ''\nf: \"null\"\ng: !!str null\nh: nil\n");
    const YamlNode& r = doc.root();
    for (const char* k : {"a", "b", "c", "d"}) EXPECT_TRUE(get(r, k).is_null()) << k;
    for (const char* k : {"e", "f", "g", "h"}) EXPECT_TRUE(get(r, k).is_scalar()) << k;
    EXPECT_EQ(get(r, "e").text(), "");
    EXPECT_EQ(get(r, "f").text(), "null");
    EXPECT_TRUE(get(r, "g").tagged());
    auto flow = read_ok("{a, b: }\n");
    EXPECT_TRUE(get(flow.root(), "a").is_null());
    EXPECT_TRUE(get(flow.root(), "b").is_null());
}

TEST(YamlDoc, EmptyTextHasANullRoot) {
    for (const char* text : {"", "# only a comment\n", "\n\n", "---\n", "~\n"}) {
        auto doc = read_ok(text);
        EXPECT_TRUE(doc.root().is_null()) << text;
    }
    YamlDocument none;
    EXPECT_TRUE(none.root().is_null());
    EXPECT_EQ(none.root().line(), 1);
}

TEST(YamlDoc, DuplicateKeysAreKeptInOrder) {
    auto doc = read_ok("a: 1\nb: 2\na: 3\n");
    auto entries = doc.root().entries();
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[2].key->text(), "a");
    EXPECT_EQ(entries[2].value->text(), "3");
    EXPECT_EQ(entries[2].key->line(), 3);
}

TEST(YamlDoc, ComplexKeysAreNodes) {
    auto doc = read_ok("? [a, b]\n: c\n");
    ASSERT_EQ(doc.root().size(), 1u);
    EXPECT_TRUE(doc.root().entries()[0].key->is_sequence());
}

TEST(YamlDoc, AliasesShareTheAnchoredNode) {
    auto doc = read_ok("web: &web [80, 443]\na: { ports: *web }\nb: { ports: *web }\n");
    const YamlNode& r = doc.root();
    const YamlNode& a = get(get(r, "a"), "ports");
    EXPECT_EQ(&a, &get(get(r, "b"), "ports"));
    ASSERT_TRUE(a.is_sequence());
    EXPECT_EQ(a.items()[1]->text(), "443");
    EXPECT_EQ(a.line(), 1);  // the anchor's position
    EXPECT_EQ(a.column(), 6);
    auto scalar = read_ok("x: &v value\ny: *v\n");
    EXPECT_EQ(get(scalar.root(), "y").text(), "value");
    // A later anchor of the same name replaces the earlier one.
    auto again = read_ok("- &a one\n- &a two\n- *a\n");
    EXPECT_EQ(again.root().items()[2]->text(), "two");
}

TEST(YamlDoc, BadAliasesAreRejectedWithPosition) {
    auto unknown = read_bad("a: 1\nb: *nowhere\n");
    EXPECT_EQ(unknown.line, 2);
    EXPECT_EQ(unknown.column, 4);
    EXPECT_NE(unknown.message.find("*nowhere names no anchor"), std::string::npos)
        << unknown.message;
    auto cycle = read_bad("a: &loop\n  b: *loop\n");
    EXPECT_EQ(cycle.line, 2);
    EXPECT_NE(cycle.message.find("cycle"), std::string::npos) << cycle.message;
}

TEST(YamlDoc, AliasExpansionIsBounded) {
    // "Billion laughs": ten levels of ten aliases stand for 10^10 nodes in a few hundred bytes.
    std::string text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i <= 10; ++i) {
        std::string prev = "*l" + std::to_string(i - 1);
        // appends, not "l" + ...: GCC 12 at -O3 warns -Wrestrict on the latter (PR 105329)
        text.append("l").append(std::to_string(i)).append(": &l").append(std::to_string(i)).append(" [");
        for (int j = 0; j < 10; ++j) text += (j ? ", " : "") + prev;
        text += "]\n";
    }
    auto problem = read_bad(text);
    EXPECT_NE(problem.message.find("aliases expand the document"), std::string::npos)
        << problem.message;
    EXPECT_GE(problem.line, 6);
    // Moderate reuse is fine.
    std::string ok = "p: &p [80, 443]\nrules:\n";
    for (int i = 0; i < 1000; ++i) ok += "  - *p\n";
    EXPECT_EQ(read_ok(ok).root().entries()[1].value->size(), 1000u);
}

TEST(YamlDoc, SecondDocumentIsRejectedWithPosition) {
    auto p = read_bad("name: a\n---\nname: b\n");
    EXPECT_EQ(p.line, 2);
    EXPECT_EQ(p.column, 1);
    EXPECT_NE(p.message.find("second YAML document"), std::string::npos) << p.message;
    read_bad("---\nname: a\n...\n---\n");
    // One document with explicit markers is fine.
    EXPECT_TRUE(read_ok("---\nname: a\n...\n").root().is_mapping());
}

TEST(YamlDoc, TabIndentationIsASyntaxError) {
    auto p = read_bad("limits:\n\tmemory: 1G\n");
    EXPECT_EQ(p.line, 2);
    // A tab inside a value or after the indentation is allowed.
    auto doc = read_ok("a: \"x\ty\"\nb:\t1\n");
    EXPECT_EQ(get(doc.root(), "a").text(), "x\ty");
    EXPECT_EQ(get(doc.root(), "b").text(), "1");
}

TEST(YamlDoc, SyntaxErrorsHavePositions) {
    auto p = read_bad("name: x\nlimits: { memory: 1G\n");
    EXPECT_GE(p.line, 2);
    auto q = read_bad("a: [1, 2\nb: 3\n");
    EXPECT_GE(q.line, 2);
    auto r = read_bad("a: b: c\n");
    EXPECT_EQ(r.line, 1);
    EXPECT_EQ(r.column, 5);
    auto s = read_bad("a: 'unterminated\n");
    EXPECT_EQ(s.line, 2);  // the end of the input
}

TEST(YamlDoc, InvalidUtf8AndControlCharactersHavePositions) {
    auto p = read_bad("name: x\ndescription: caf\xe9\n");
    EXPECT_EQ(p.line, 2);
    EXPECT_EQ(p.column, 17);
    auto q = read_bad(std::string("a: b\x01\n"));
    EXPECT_EQ(q.line, 1);
    EXPECT_EQ(q.column, 5);
    EXPECT_NE(q.message.find("control characters"), std::string::npos) << q.message;
}

TEST(YamlDoc, DeepNestingIsRejectedNotOverflowed) {
    std::string ok(kYamlMaxDepth, '[');
    ok += std::string(kYamlMaxDepth, ']');
    EXPECT_TRUE(read_ok(ok).root().is_sequence());
    for (int depth : {kYamlMaxDepth + 1, 100000}) {
        std::string deep(static_cast<std::size_t>(depth), '[');
        deep += std::string(static_cast<std::size_t>(depth), ']');
        auto p = read_bad(deep);
        EXPECT_EQ(p.line, 1);
        EXPECT_EQ(p.column, kYamlMaxDepth + 1);
        EXPECT_NE(p.message.find("nesting deeper than"), std::string::npos) << p.message;
    }
    std::string block;
    for (int i = 0; i <= kYamlMaxDepth; ++i) block += std::string(static_cast<std::size_t>(i), ' ') + "k:\n";
    auto q = read_bad(block);
    EXPECT_EQ(q.line, kYamlMaxDepth + 1);
}

TEST(YamlDoc, DocumentMovesKeepNodes) {
    auto doc = read_ok("a: [1, 2]\n");
    const YamlNode* a = &get(doc.root(), "a");
    YamlDocument moved = std::move(doc);
    EXPECT_EQ(&get(moved.root(), "a"), a);
    EXPECT_EQ(a->items()[0]->text(), "1");
}

// What the policy parser makes of the reader's rules.
namespace {

nlohmann::json policy_errors(const std::string& text) {
    try {
        parse_policy(text, "p.yaml");
    } catch (const Error& e) {
        return e.details()["errors"];
    }
    ADD_FAILURE() << "accepted:\n" << text;
    return nlohmann::json::array();
}

}  // namespace

TEST(PolicyYaml, SecondDocumentIsAnError) {
    auto errors = policy_errors("name: a\n---\nname: b\n");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["line"], 2);
    EXPECT_NE(errors[0]["message"].get<std::string>().find("YAML syntax: a second YAML document"),
              std::string::npos);
}

TEST(PolicyYaml, AliasesWork) {
    Policy p = parse_policy(
        "name: x\negress:\n  allow:\n    - cidr: 10.0.0.0/8\n      ports: &web [80, 443]\n"
        "    - cidr: 10.1.0.0/16\n      ports: *web\n",
        "p.yaml");
    ASSERT_EQ(p.egress.allow.size(), 2u);
    EXPECT_EQ(p.egress.allow[1].ports.size(), 2u);
}

TEST(PolicyYaml, NullsAndQuotedNulls) {
    auto errors = policy_errors("name: ~\n");
    ASSERT_EQ(errors.size(), 2u);  // and "the policy needs a name"
    EXPECT_EQ(errors[0]["column"], 7);
    EXPECT_NE(errors[0]["message"].get<std::string>().find("name must be a single value"),
              std::string::npos);
    // Quoted, "null" is a name.
    EXPECT_EQ(parse_policy("name: 'null'\n", "p.yaml").name, "null");
    // An empty egress or mcp section is allowed.
    Policy p = parse_policy("name: x\negress:\nmcp:\n", "p.yaml");
    EXPECT_TRUE(p.has_egress);
    EXPECT_TRUE(p.mcp.enabled);
}

TEST(PolicyYaml, DuplicateKeysAreReportedAtEachRepeat) {
    auto errors = policy_errors("name: x\nlimits:\n  pids: 1\n  pids: 2\n  pids: 3\n");
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0]["line"], 4);
    EXPECT_EQ(errors[1]["line"], 5);
    EXPECT_EQ(errors[1]["column"], 3);
}

TEST(PolicyYaml, ManyRulesParse) {
    std::string text = "name: big\negress:\n  allow:\n";
    for (int i = 0; i < 20000; ++i) {
        text += "    - cidr: 10." + std::to_string(i / 256) + "." + std::to_string(i % 256) +
                ".0/24\n      ports: [443]\n";
    }
    Policy p = parse_policy(text, "big.yaml");
    ASSERT_EQ(p.egress.allow.size(), 20000u);
    EXPECT_EQ(p.egress.allow[19999].where.line, 4 + 2 * 19999);
    EXPECT_EQ(p.egress.allow[19999].where.column, 7);
}
