"""The official `openai` client against a running `assay serve` (started by tests/server.rs,
which passes ASSAY_BASE_URL and ASSAY_API_KEY). Checks the shapes and invariants the client
relies on, never what the model happens to say."""

import math
import os
import unittest

import openai

MODEL = "smollm2"
EMBED_MODEL = "minilm"


def client(api_key=None):
    return openai.OpenAI(base_url=os.environ["ASSAY_BASE_URL"], api_key=api_key or os.environ["ASSAY_API_KEY"], max_retries=0)


def chat(**kwargs):
    return client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name three colours."}], **kwargs)


class OpenAIClient(unittest.TestCase):
    def test_chat_completion(self):
        r = chat(max_tokens=8, temperature=0.7, seed=5)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, MODEL)
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertTrue(0 < r.usage.completion_tokens <= 8)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        again = chat(max_tokens=8, temperature=0.7, seed=5)
        self.assertEqual(again.choices[0].message.content, r.choices[0].message.content, "seeded requests repeat")

    def test_n_choices_and_stop(self):
        r = chat(max_tokens=6, temperature=1.0, seed=1, n=3, stop=["\n\n"])
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        for c in r.choices:
            self.assertNotIn("\n\n", c.message.content)

    def test_streaming_adds_up_to_the_same_text(self):
        whole = chat(max_tokens=10, temperature=0.0)
        stream = chat(max_tokens=10, temperature=0.0, stream=True, stream_options={"include_usage": True})
        pieces, finish, usage = [], None, None
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        self.assertEqual("".join(pieces), whole.choices[0].message.content)
        self.assertEqual(finish, whole.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, whole.usage.completion_tokens)

    def test_logprobs(self):
        r = chat(max_tokens=5, temperature=0.0, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(len(t.top_logprobs), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(t.logprob, t.top_logprobs[0].logprob, places=5)
            self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)

    def test_streamed_logprobs_equal_the_whole_response(self):
        whole = chat(max_tokens=5, temperature=0.0, logprobs=True, top_logprobs=2)
        streamed = []
        chunks_with_logprobs = 0
        for chunk in chat(max_tokens=5, temperature=0.0, logprobs=True, top_logprobs=2, stream=True):
            for c in chunk.choices:
                if c.logprobs and c.logprobs.content:
                    chunks_with_logprobs += 1
                    streamed.extend(c.logprobs.content)
        self.assertEqual([t.token for t in streamed], [t.token for t in whole.choices[0].logprobs.content])
        self.assertEqual([t.logprob for t in streamed], [t.logprob for t in whole.choices[0].logprobs.content])
        # Each token's log-probability comes with its own piece, not all at the end.
        self.assertGreater(chunks_with_logprobs, 1)

    def test_completions(self):
        r = client().completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0.0, logprobs=2)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(len(r.choices[0].logprobs.tokens), r.usage.completion_tokens)
        self.assertEqual("".join(r.choices[0].logprobs.tokens), r.choices[0].text)

    def test_models(self):
        ids = [m.id for m in client().models.list()]
        self.assertIn(MODEL, ids)
        self.assertIn(EMBED_MODEL, ids)

    def test_embeddings(self):
        # The client asks for base64 by default and decodes it; floats must agree.
        r = client().embeddings.create(model=EMBED_MODEL, input=["a cat sat on the mat", "a cat was sitting on the mat", "quarterly tax filing"])
        floats = client().embeddings.create(model=EMBED_MODEL, input=["a cat sat on the mat"], encoding_format="float")
        vecs = [d.embedding for d in r.data]
        self.assertEqual([d.index for d in r.data], [0, 1, 2])
        self.assertEqual(len(vecs[0]), 384)
        for a, b in zip(vecs[0], floats.data[0].embedding):
            self.assertAlmostEqual(a, b, places=6)
        cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        self.assertGreater(cos(vecs[0], vecs[1]), cos(vecs[0], vecs[2]))
        self.assertGreater(r.usage.prompt_tokens, 0)

    def test_errors_are_typed(self):
        with self.assertRaises(openai.AuthenticationError):
            client(api_key="wrong").models.list()
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
        self.assertEqual(e.exception.code, "model_not_found")
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}])


if __name__ == "__main__":
    unittest.main()
