"""Undoable changes: the parameters (drags, edits, fits, resets) and the profile / M."""

from __future__ import annotations

from PyQt5 import QtWidgets

_MERGE_IDS = {"flux": 101, "x": 102, "y": 103, "re": 104, "q": 105, "angle": 106, "sky": 107,
              "n": 108}


class SetParamsCommand(QtWidgets.QUndoCommand):
    """Parameters (and the fit result that goes with them) from ``old`` to ``new``.

    Consecutive edits of the same parameter in the panel merge into one step.
    """

    def __init__(self, session, old, new, text, *, old_result=None, new_result=None,
                 merge_name=None):
        super().__init__(text)
        self.session = session
        self.old, self.new = old, new
        self.old_result, self.new_result = old_result, new_result
        self.merge_name = merge_name

    def id(self):
        return _MERGE_IDS.get(self.merge_name, -1)

    def mergeWith(self, other):
        if other.id() != self.id() or self.id() < 0:
            return False
        self.new, self.new_result = other.new, other.new_result
        return True

    def redo(self):
        self._apply(self.new, self.new_result)

    def undo(self):
        self._apply(self.old, self.old_result)

    def _apply(self, params, result):
        s = self.session
        if result is not s.result:
            s.set_result(result)
        s.set_params(params, origin="undo", clear_result=False)
        s.request_render(immediate=True)


class SetProfileCommand(QtWidgets.QUndoCommand):
    """The profile and M from ``old`` to ``new`` (each a ``(profile, M)`` pair).

    A new profile clears the fit result (its errors and status belong to the old model); undo
    brings back the result that went with the old profile."""

    def __init__(self, session, old, new, *, old_result=None):
        super().__init__(f"Profile {new[0]} M={new[1]}")
        self.session = session
        self.old, self.new = tuple(old), tuple(new)
        self.old_result = old_result

    def redo(self):
        self.session.set_profile(*self.new)

    def undo(self):
        self.session.set_profile(*self.old, result=self.old_result)


class SetSceneCommand(QtWidgets.QUndoCommand):
    """The other sources and the user's mask from ``old`` to ``new`` (each a
    ``(neighbours, user_mask)`` pair; a None part is left alone), with the fit result that
    went with each side (adding, deleting, moving a source or drawing a mask clears it)."""

    def __init__(self, session, old, new, text, *, old_result=None, new_result=None,
                 new_params=None, old_params=None):
        super().__init__(text)
        self.session = session
        self.old, self.new = old, new
        self.old_result, self.new_result = old_result, new_result
        self.old_params, self.new_params = old_params, new_params

    def redo(self):
        self._apply(self.new, self.new_result, self.new_params)

    def undo(self):
        self._apply(self.old, self.old_result, self.old_params)

    def _apply(self, pair, result, params):
        s = self.session
        neighbours, mask = pair
        if neighbours is not None:
            s.set_neighbours(neighbours, origin="undo")
        if mask is not None:
            s.set_user_mask(None if mask is False else mask)
        if params is not None:
            s.set_params(params, origin="undo", clear_result=False)
        if result is not s.result:
            s.set_result(result)
        s.request_render(immediate=True)
