"""Corrections that flow back into training (front-end process): recent answers kept for a
while (recent.py), the corrections folder they are written to (store.py), and ``Feedback``,
which joins the two for POST /feedback. Off unless DIGITS_FEEDBACK_DIR is set: it stores
what users sent. The folder's format is a contract with training: docs/design.md section 7.
"""

from service.feedback.corrections import Feedback, FeedbackStoreError

__all__ = ["Feedback", "FeedbackStoreError"]
